#!/usr/bin/env bash
# Build the collection tarball, install it into a scratch path, and check that every module,
# filter and role is documented by ansible-doc from the installed copy.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/venom-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$(scripts/collection-tree.sh)
(cd "$root/ansible_collections/venom/models" && ansible-galaxy collection build --output-path "$work" >/dev/null)
tarball=$(ls "$work"/venom-models-*.tar.gz)
echo "built $(basename "$tarball") ($(du -k "$tarball" | cut -f1) kB)"
if tar -tzf "$tarball" | grep -E '(^|/)(\.venv[^/]*|\.git|__pycache__|tests/output)/' ; then
  echo "FAIL: the tarball carries development files (see above); fix build_ignore in galaxy.yml" >&2; exit 1
fi
ansible-galaxy collection install -p "$work/installed" "$tarball" >/dev/null
export ANSIBLE_COLLECTIONS_PATH="$work/installed"
python - "$work/installed" <<'PY'
import json, os, subprocess, sys
base = os.path.join(sys.argv[1], "ansible_collections", "venom", "models")
problems, checked = [], 0
def names(sub, ext=".py"):
    d = os.path.join(base, "plugins", sub)
    return sorted(f[:-len(ext)] for f in os.listdir(d) if f.endswith(ext) and not f.startswith("_")) if os.path.isdir(d) else []
def check_options(where, options):
    for name, spec in (options or {}).items():
        if not spec.get("description"):
            problems.append(f"{where}: option {name} has no description")
        check_options(f"{where}.{name}", spec.get("suboptions"))
kinds = [("module", names("modules"))]
filters = sorted(set(names("filter")) | set(names("filter", ".yml")))
kinds.append(("filter", filters))
roles_dir = os.path.join(base, "roles")
roles = sorted(r for r in os.listdir(roles_dir) if not r.startswith("_")) if os.path.isdir(roles_dir) else []
kinds.append(("role", roles))
for kind, items in kinds:
    for item in items:
        fqcn = f"venom.models.{item}"
        proc = subprocess.run(["ansible-doc", "-t", kind, "--json", fqcn], capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"ansible-doc -t {kind} {fqcn} failed: {proc.stderr.strip()[:500]}")
            continue
        data = json.loads(proc.stdout).get(fqcn, {})
        if kind == "role":
            for ep, spec in data.get("entry_points", {}).items():
                if not spec.get("short_description"):
                    problems.append(f"{fqcn}:{ep} has no short_description")
                check_options(f"{fqcn}:{ep}", spec.get("options"))
        else:
            doc = data.get("doc") or {}
            for key in ("short_description", "description"):
                if not doc.get(key):
                    problems.append(f"{fqcn}: no {key}")
            if not data.get("examples"):
                problems.append(f"{fqcn}: no EXAMPLES")
            if not data.get("return"):
                problems.append(f"{fqcn}: no RETURN")
            check_options(fqcn, doc.get("options"))
        checked += 1
        print(f"ansible-doc ok: {kind} {fqcn}")
if problems:
    print("\n".join("FAIL: " + p for p in problems), file=sys.stderr)
    sys.exit(1)
if checked == 0:
    print("FAIL: no plugin documented", file=sys.stderr)
    sys.exit(1)
PY
echo "build tier: tarball builds, installs, and ansible-doc documents every plugin"
