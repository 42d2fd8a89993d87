#!/usr/bin/env bash
# The README's first command (make demo): the main job on an embedded default, this machine as
# the only host (local connection, no root needed), state under ./demo-state in the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
state="$PWD/demo-state"
mkdir -p "$state"
root=$(VENOM_COLLECTION_ROOT="$state/collections" scripts/collection-tree.sh)
export ANSIBLE_COLLECTIONS_PATH="$root" ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_NOCOLOR=${ANSIBLE_NOCOLOR:-}
start=$(date +%s)
ansible-playbook -i localhost, -c local -e "ansible_python_interpreter=$PWD/.venv/bin/python" \
  -e "venom_demo_models_dir=$state/models" playbooks/demo.yml
echo
echo "demo finished in $(( $(date +%s) - start ))s; state is in $state (remove it to start over)."
