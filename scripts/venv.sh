#!/usr/bin/env bash
# Create or refresh a test/controller virtualenv (idempotent, cached by a stamp).
#   scripts/venv.sh          .venv        the floor: ansible-core 2.19 on Python 3.11
#                                         (tests/requirements.txt)
#   scripts/venv.sh newest   .venv-newest the newest ansible-core release tested, on Python 3.12
#                                         (tests/requirements-newest.txt; every other package from
#                                         tests/requirements.txt)
# Both get requirements-target.txt: their Python is also the managed host's in the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:-floor}
NEWEST_PYTHON_VERSION=3.12  # ansible-core 2.20+ needs Python >= 3.12 on the controller

# A Python of version $1 that runs: VENOM_PYTHON_NEWEST, pythonX.Y on PATH, or one of pyenv's
# installed versions (pyenv's shim on PATH fails when that version is not selected).
find_python() {
  local want=$1 cand pyenv_root
  pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  for cand in ${VENOM_PYTHON_NEWEST:+"$VENOM_PYTHON_NEWEST"} "python$want" \
              "$pyenv_root"/versions/"$want"*/bin/"python$want"; do
    if "$cand" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; then
      command -v "$cand"
      return 0
    fi
  done
  return 1
}

reqs=()
case "$profile" in
  floor)
    PY=${VENOM_PYTHON:-python3.11}
    VENV=${VENOM_VENV:-.venv}
    command -v "$PY" >/dev/null || { echo "venv.sh: $PY not found; set VENOM_PYTHON to a Python >= 3.11" >&2; exit 1; }
    reqs=(-r tests/requirements.txt -r requirements-target.txt)
    want=$(cat tests/requirements.txt requirements-target.txt | sha256sum | cut -c1-16)
    ;;
  newest)
    VENV=${VENOM_VENV_NEWEST:-.venv-newest}
    PY=$(find_python "$NEWEST_PYTHON_VERSION") || {
      echo "venv.sh: the newest ansible-core (tests/requirements-newest.txt) needs Python $NEWEST_PYTHON_VERSION," \
           "and none was found (tried \$VENOM_PYTHON_NEWEST, python$NEWEST_PYTHON_VERSION on PATH and pyenv's versions)." \
           "Install Python $NEWEST_PYTHON_VERSION (e.g. 'pyenv install $NEWEST_PYTHON_VERSION', or the distribution's" \
           "python$NEWEST_PYTHON_VERSION and python$NEWEST_PYTHON_VERSION-venv packages), or set VENOM_PYTHON_NEWEST to its path." >&2
      exit 1
    }
    # everything of tests/requirements.txt but its ansible-core pin, which the newest file replaces
    mkdir -p "$VENV"
    grep -viE '^[[:space:]]*ansible-core([^a-z0-9_.-]|$)' tests/requirements.txt > "$VENV/.venom-requirements-common.txt"
    reqs=(-r "$VENV/.venom-requirements-common.txt" -r tests/requirements-newest.txt -r requirements-target.txt)
    want=$( (cat tests/requirements.txt tests/requirements-newest.txt requirements-target.txt; echo "$PY") | sha256sum | cut -c1-16)
    ;;
  *) echo "venv.sh: unknown profile '$profile' (floor, newest)" >&2; exit 2 ;;
esac

stamp="$VENV/.venom-stamp"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${reqs[@]}"
echo "$want" > "$stamp"
echo "venv.sh: $VENV ready ($("$VENV/bin/python" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])')," \
     "$("$VENV/bin/python" -c 'from ansible.release import __version__; print("ansible-core", __version__)'))"
