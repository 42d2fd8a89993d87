#!/usr/bin/env bash
# Create or refresh the test/controller virtualenv in .venv (idempotent, cached by a stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VENOM_PYTHON:-python3.11}
VENV=${VENOM_VENV:-.venv}
stamp="$VENV/.venom-stamp"
want=$(cat tests/requirements.txt requirements-target.txt | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
command -v "$PY" >/dev/null || { echo "venv.sh: $PY not found; set VENOM_PYTHON to a Python >= 3.11" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r tests/requirements.txt -r requirements-target.txt
echo "$want" > "$stamp"
echo "venv.sh: $VENV ready"
