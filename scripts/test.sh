#!/usr/bin/env bash
# Run one test tier, or all of them in order ("all"). Called by `make test` / `make test-<tier>`.
# Every tier prints a banner and its result; the script stops at the first failing tier.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1 PY_COLORS=0
PYTEST=(python -m pytest -ra -p no:cacheprovider)
TIERS=(unit sanity units lint build integration fleet)

banner() { printf '\n==================== tier: %s ====================\n' "$1"; }

tier_unit() {
  "${PYTEST[@]}" tests/unit
}

tier_sanity() {
  local root; root=$(scripts/collection-tree.sh)
  (cd "$root/ansible_collections/venom/models" && ansible-test sanity --python 3.11 --requirements --color no)
}

tier_units() {
  local root; root=$(scripts/collection-tree.sh)
  (cd "$root/ansible_collections/venom/models" && ansible-test units --python 3.11 --requirements --color no)
}

tier_lint() {
  ansible-lint --profile production --strict --nocolor
}

tier_build() {
  scripts/check-build.sh
}

tier_integration() {
  "${PYTEST[@]}" tests/integration
}

tier_fleet() {
  "${PYTEST[@]}" tests/fleet
}

run_tier() {
  local t=$1 start rc
  banner "$t"
  start=$(date +%s)
  set +e; "tier_$t"; rc=$?; set -e
  printf '==================== tier %s: %s in %ss ====================\n' "$t" "$([ $rc -eq 0 ] && echo PASSED || echo FAILED)" "$(( $(date +%s) - start ))"
  return $rc
}

case "${1:-all}" in
  all) for t in "${TIERS[@]}"; do run_tier "$t"; done; echo; echo "ALL TIERS PASSED: ${TIERS[*]}" ;;
  *) printf '%s\n' "${TIERS[@]}" | grep -qx "$1" || { echo "unknown tier '$1'; tiers: ${TIERS[*]}" >&2; exit 2; }
     run_tier "$1" ;;
esac
