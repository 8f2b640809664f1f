#!/usr/bin/env bash
# Runs a validate matrix's layouts through the CPU executor at a few tokens
# per micro-batch (default 16, micro-batch 1, the layouts' gradient
# accumulation kept), before GPU time is spent on it: a layout the executor
# refuses or fails on shows up here in minutes, not on the GPU. The memory
# comparison runs too (at so few tokens a pipeline rank's step end can be its
# peak, docs/memory-model.md). Cases whose model states do not fit this
# machine's memory are the caller's to leave out: CASES is a comma-separated
# list of case indices (default all). Usage:
#   bench/cpu_dry_run.sh [MATRIX] [TOKENS]     (after scripts/setup.sh)
# e.g. CASES=0,1,2,10,15 bench/cpu_dry_run.sh bench/data/validate_h200.json
set -euo pipefail
cd "$(dirname "$0")/.."
matrix=${1:-bench/data/validate_h200.json}
tokens=${2:-16}
out=${OUT:-build/cpu_dry_run}
mkdir -p "$out"
python3 - "$matrix" "$tokens" "${CASES:-}" "$out/matrix.json" <<'PY'
import json, re, sys
matrix, tokens, cases, dest = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
d = json.load(open(matrix))
keep = [int(i) for i in cases.split(",")] if cases else range(len(d["cases"]))
out = []
for i in keep:
    c = dict(d["cases"][i])
    c["seq"] = tokens
    c["layout"] = re.sub(r"mb=\d+", "mb=1", c.get("layout", ""))
    out.append(c)
json.dump({"cases": out}, open(dest, "w"), indent=1)
print(f"{len(out)} of {len(d['cases'])} cases at {tokens} tokens a micro-batch")
PY
build/zeroplan validate --matrix "$out/matrix.json" --steps 1 --warmup 0 --out "$out/validate" | grep -E "^case|error|not run"
