#!/usr/bin/env bash
# make bench: run every benchmark in bench/ (or the ones named: scripts/bench.sh facts hf ...).
# Each prints a table with ratios against a baseline measured in the same run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_NOCOLOR=1
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in bench/bench_*.py; do n=${f#bench/bench_}; names+=("${n%.py}"); done
fi
failed=()
for n in "${names[@]}"; do
  echo; echo "==================== bench: $n ===================="
  (cd bench && python "bench_$n.py") || failed+=("$n")
done
echo
if [ ${#failed[@]} -gt 0 ]; then echo "benchmarks that missed a target or failed: ${failed[*]}"; exit 1; fi
echo "all benchmarks met their targets"
