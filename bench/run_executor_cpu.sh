#!/usr/bin/env bash
# The CPU executor on a 12M-parameter GPT-2 shaped model (bench/data/small-gpt.json):
# `zeroplan run` in fp32 and bf16 (one process, micro-batch 4 x 256 tokens,
# 6 steps, the first left out of the medians), then `zeroplan validate` over
# bench/data/validate_small.json (three emulated layouts). Prints one line per
# run and the validate summary; writes everything under ${OUT:-build/executor_bench}.
# Run from the repository root after scripts/setup.sh (about 2 minutes on 2 cores).
set -euo pipefail
zeroplan=${ZEROPLAN:-build/zeroplan}
out=${OUT:-build/executor_bench}
mkdir -p "$out"
for precision in fp32 bf16; do
  "$zeroplan" emit --format zeroplan --model bench/data/small-gpt.json --gpu H100-80GB --gpus 1 --precision "$precision" \
    --seq 256 --micro-batch 4 --out "$out/$precision" > /dev/null
  "$zeroplan" run --plan "$out/$precision/plan.json" --steps 6 > "$out/$precision/run.log"
  python3 - "$out/$precision/plan.json.measured.json" "$precision" <<'PY'
import json, statistics, sys
d = json.load(open(sys.argv[1]))
steps = d["steps"][1:]
med = lambda key: statistics.median(s["phases_s"][key] for s in steps)
print(f"{sys.argv[2]}: {d['parameters']} parameters, step {statistics.median(s['seconds'] for s in steps):.2f} s "
      f"(forward {med('forward'):.2f}, backward {med('backward'):.2f}, optimizer {med('optimizer'):.3f}), "
      f"device peak {d['memory']['device_peak_bytes'] / 2**20:.1f} MiB, model states exact: {d['comparison']['model_states_match']}, "
      f"activation error {d['comparison']['activation_error'] * 100:.2f}%")
PY
done
"$zeroplan" validate --matrix bench/data/validate_small.json --steps 1 --warmup 0 --out "$out/validate" > /dev/null
python3 - "$out/validate/validate.json" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    comps = {k: (f"{v['error'] * 100:+.1f}%" if v["error"] is not None else f"unpredicted {v['measured_bytes'] / 2**20:.1f} MiB")
             for k, v in c["memory"]["components"].items()}
    peak = c["memory"]["peak"]
    print(f"validate {c['layout']}: peak {peak['measured_bytes'] / 2**20:.1f} MiB measured, "
          f"{peak['predicted_bytes'] / 2**20:.1f} predicted ({peak['error'] * 100:+.1f}%); {comps}")
PY
