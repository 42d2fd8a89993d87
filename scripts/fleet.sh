#!/usr/bin/env bash
# The fleet of real systemd hosts for tests (tests/fleet/harness.py): start, stop, inspect.
#   scripts/fleet.sh up [-n 3] [--state-dir DIR]   start N hosts, write DIR/inventory.yml
#   scripts/fleet.sh down [--state-dir DIR]        power off and remove them (idempotent)
#   scripts/fleet.sh status [--state-dir DIR]      what the state file records
#   scripts/fleet.sh base                          build the cached Debian base (once)
# Needs root. See tests/fleet/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec "$py" tests/fleet/harness.py "$@"
