#!/usr/bin/env bash
# Instructions per enumerated layout inside zp::plan() for every planner_bench
# search, counted by callgrind: unlike seconds, the count does not move with
# the machine's load, so it is the number to compare between two versions of
# the search (docs/benchmarks.md). Each search runs once (one iteration under
# valgrind outlasts the minimum time). Usage: bench/planner_instructions.sh
# [BENCH_BINARY] [FILTER]
set -euo pipefail
cd "$(dirname "$0")/.."
bench=${1:-build/bench/planner_bench}
filter=${2:-.}
command -v valgrind >/dev/null || { echo "planner_instructions: valgrind is not installed" >&2; exit 2; }
[ -x "$bench" ] || { echo "planner_instructions: $bench is not built (scripts/setup.sh builds it)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bench" --benchmark_list_tests=true --benchmark_filter="$filter" > "$work/names"
printf '%-52s %10s %12s %8s\n' search layouts instructions Ir/layout
while read -r name; do
  valgrind --tool=callgrind --callgrind-out-file="$work/cg" --toggle-collect='zp::plan(*' \
    "$bench" --benchmark_filter="^${name}\$" --benchmark_min_time=0.001 --benchmark_format=json \
    > "$work/json" 2>/dev/null
  python3 - "$work/json" "$work/cg" "$name" <<'PY'
import json, re, sys
bench = json.load(open(sys.argv[1]))["benchmarks"][0]
if bench["iterations"] != 1:
    sys.exit(f"planner_instructions: {sys.argv[3]} ran {bench['iterations']} iterations, expected 1")
ir = int(re.search(r"^(?:summary|totals):\s+(\d+)", open(sys.argv[2]).read(), re.M).group(1))
layouts = int(bench["layouts"])
print(f"{sys.argv[3] + ' ' + bench.get('label', ''):52s} {layouts:10d} {ir:12d} {ir / layouts:8.0f}")
PY
done < "$work/names"
