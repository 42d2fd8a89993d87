#!/usr/bin/env bash
# Run one test tier, or all of them in order ("all"). Called by `make test` / `make test-<tier>`.
# Every tier prints a banner and its result; the script stops at the first failing tier.
# The tiers run on the floor (.venv: ansible-core 2.19, Python 3.11); the *-newest tiers repeat
# those that differ between ansible-core versions on the newest release tested (.venv-newest:
# tests/requirements-newest.txt, Python 3.12): sanity, units, and the integration tests that run
# modules and playbooks (marker "ansible", tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0
PYTEST=(python -m pytest -ra -p no:cacheprovider)
TIERS=(unit mutation sanity units sanity-newest units-newest lint build integration integration-newest fleet)

banner() { printf '\n==================== tier: %s ====================\n' "$1"; }

tier_unit() {
  "${PYTEST[@]}" tests/unit
}

# mutation testing of the store against its unit tests: fails when the score (killed / non-equivalent mutants) is below the floor (docs/testing.md)
tier_mutation() {
  # CI-sized: the quota and lock modules of the store (about 400 mutants, a few minutes on 2 cores);
  # the whole store and the library are `make mutation` (docs/testing.md has the figures)
  nice -n 15 python scripts/mutation.py store --only store/quota.py,store/locks.py --floor "${VENOM_MUTATION_FLOOR:-95}"
}

# ansible-test bootstraps pip in its venvs with a script it downloads from a host that may be
# unreachable: give it our stand-in (scripts/ansible-test-get-pip.py) for every pip version it uses.
ansible_test_pip_bootstrap() {
  local ver
  ver=$(python - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements as pr
m = re.search(r"pip='([0-9.]+)'", inspect.getsource(pr.get_venv_packages))
print(m.group(1) if m else "24.2")
PY
)
  mkdir -p ~/.ansible/test/cache
  cp scripts/ansible-test-get-pip.py "$HOME/.ansible/test/cache/get_pip_${ver//./_}.py"
}

# ansible-test's --python: the version of the venv first on PATH
py_version() { python -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }

# Put .venv-newest (built or refreshed here, cached by its stamp) first on PATH: the rest of the
# tier runs on the newest ansible-core. Fails naming what to install when there is no Python 3.12.
use_newest() {
  scripts/venv.sh newest
  PATH="$PWD/.venv-newest/bin:$PATH"
  echo "on ansible-core $(python -c 'from ansible.release import __version__; print(__version__)'), Python $(py_version)"
}

tier_sanity() {
  ansible_test_pip_bootstrap
  local root; root=$(scripts/collection-tree.sh)
  local log; log=$(mktemp)
  (cd "$root/ansible_collections/venom/models" && ansible-test sanity --python "$(py_version)" --requirements --color no) 2>&1 | tee "$log"
  if grep -E 'Skipping sanity test|Required program .* not found' "$log"; then
    echo "sanity: some sanity tests did not run (above); install what they need (make system)" >&2
    return 1
  fi
}

tier_units() {
  ansible_test_pip_bootstrap
  local root; root=$(scripts/collection-tree.sh)
  (cd "$root/ansible_collections/venom/models" && ansible-test units --python "$(py_version)" --requirements --color no)
}

tier_sanity_newest() { use_newest; tier_sanity; }
tier_units_newest() { use_newest; tier_units; }

tier_lint() {
  # the playbooks use this collection's modules: let ansible-lint resolve them from the built tree
  local root; root=$(scripts/collection-tree.sh)
  ANSIBLE_COLLECTIONS_PATH="$root" ansible-lint --profile production --strict --nocolor --offline
  antsibull-changelog lint
  # every Python file, tests and scripts included (ansible-test sanity covers only the collection's
  # code): a helper defined twice silently replaces the first (pyflakes: "redefinition of unused")
  python -m pyflakes plugins tests scripts bench extensions
}

tier_build() {
  scripts/check-build.sh
}

tier_integration() {
  "${PYTEST[@]}" --durations=15 tests/integration
}

# only the tests that run modules and playbooks: the servers, vLLM and the demo do not change
# with ansible-core
tier_integration_newest() {
  use_newest
  # version-independent and slow, run once by the integration tier: the same module driving vLLM
  # (one instance, two instances) instead of the Ollama double, SIGKILLs of the library
  # mid-download, ansible-builder's view. The local provider's tests and the Hugging Face tests of
  # the library's own behaviour (versions, resume, repair, removal, concurrency) run the same
  # module code as the HF tests kept here (a full install with check mode and diff, the errors and
  # their fixes, no_log of the token, the quota refusal): ansible-core changes the plumbing they
  # share, which those cover, not the download logic.
  local hf=tests/integration/test_venom_model_hf.py
  "${PYTEST[@]}" --durations=10 -m ansible tests/integration \
    --ignore=tests/integration/test_venom_runtime_vllm.py \
    --ignore=tests/integration/test_venom_runtime_instances.py \
    --ignore=tests/integration/test_kill_install.py \
    --ignore=tests/integration/test_execution_environment.py \
    --ignore=tests/integration/test_venom_model_local.py \
    --deselect "$hf::test_second_present_makes_no_request" \
    --deselect "$hf::test_multi_file_weights_and_file_selection" \
    --deselect "$hf::test_pinned_commit_and_moving_branch" \
    --deselect "$hf::test_runtime_active_keeps_old_version_on_latest_and_refuses_removal" \
    --deselect "$hf::test_concurrent_installs_of_one_model" \
    --deselect "$hf::test_killed_download_resumes_without_refetching_completed_files" \
    --deselect "$hf::test_timeout_keeps_the_download_for_the_next_run" \
    --deselect "$hf::test_verified_repairs_a_corrupted_file" \
    --deselect "$hf::test_removal_leaves_nothing"
}

tier_fleet() {
  "${PYTEST[@]}" --durations=15 tests/fleet
}

run_tier() {
  local t=$1 start rc
  banner "$t"
  start=$(date +%s)
  # a subshell with errexit: any failing command fails the tier (errexit is off in a plain
  # function call whose status is being tested)
  set +e; ( set -e; "tier_${t//-/_}" ); rc=$?; set -e
  printf '==================== tier %s: %s in %ss ====================\n' "$t" "$([ $rc -eq 0 ] && echo PASSED || echo FAILED)" "$(( $(date +%s) - start ))"
  return $rc
}

case "${1:-all}" in
  all) for t in "${TIERS[@]}"; do run_tier "$t"; done; echo; echo "ALL TIERS PASSED: ${TIERS[*]}" ;;
  *) printf '%s\n' "${TIERS[@]}" | grep -qx "$1" || { echo "unknown tier '$1'; tiers: ${TIERS[*]}" >&2; exit 2; }
     run_tier "$1" ;;
esac
