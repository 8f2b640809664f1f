#!/usr/bin/env bash
# Runs the CPU benchmarks (after scripts/setup.sh) and prints the medians of
# five repetitions. Record results in docs/benchmarks.md with the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
build/bench/memory_bench --benchmark_min_time=0.3 --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true "$@" 2>&1 | grep -E "Benchmark|---|_median|_stddev"
build/bench/host_optimizer_bench --benchmark_min_time=0.5 2>&1 | grep -E "^BM"
build/bench/model_init_bench --benchmark_min_time=0.5 2>&1 | grep -E "^BM"
build/bench/attention_cpu_bench --benchmark_min_time=0.5 2>&1 | grep -E "^BM"
