#!/usr/bin/env bash
# The GPU checks of issue 7, for a machine with an NVIDIA GPU (the H200 of
# ../shared/reference/h200.md): configures and builds with CUDA, runs the
# tests labelled gpu (the CUDA kernels against the CPU kernels, fp32 and
# bf16: norms, activations, AdamW, attention (row kernels, cuBLASLt and
# flash-style), rotary positions, embeddings,
# cross-entropy, cuBLASLt products; the caching allocator against
# cudaMemGetInfo; pinned copies on their own stream, timed by CUDA events;
# NCCL on every GPU under mpirun, and `zeroplan run --device cuda` under
# mpirun over NCCL), sweeps bf16 GEMM shapes in shuffled rounds
# and fits the time model's GEMM curve to them (`zeroplan calibrate`, the
# fitted file left in the log folder, not committed by the script; after the
# matrix, its HBM and launch fields fitted to the measured compute phases,
# `zeroplan calibrate --validate`, with the attention fields from the
# attention kernels timed alone), and
# prints a short summary last. Each step runs even when an earlier one
# failed, so one run shows everything. Then the models and trainer on the
# CUDA backend against the CPU backend (cuda_model_test), the validation
# matrix on the GPU (`zeroplan validate --device cuda`, bench/data/
# validate_h200.json: predicted vs measured memory per component and step
# time; materialised attention but for two flash-style cases on the tensor-core tiles and one fp32 case on the warp-per-row flash kernels), the
# attention kernels timed alone (bench/gpu_attention_bench: the tensor-core
# flash tiles, the warp-per-row flash kernels and cuBLASLt's materialised
# products, each the rate of an attention field of the time model, fitted by
# `zeroplan calibrate --attention` and then held in the compute fit), the
# memory-bound kernels timed alone against a device copy
# (bench/gpu_elementwise_bench: hbm_fraction fitted to it by `zeroplan
# calibrate --elementwise`, then held in the compute fit) and the throughput comparison
# with PyTorch eager on GPT-2 XL, 8 x 1024, zeroplan with either attention
# (bench/pytorch_gpt2_step.py, SDPA, the same GPU in the same run; the
# ratios are printed last). Logs go to ${OUT:-build/gpu_check}. The whole run keeps
# within BUDGET_S seconds (default 480): the matrix gets what is left, and
# every step has a time limit of its own (exit code 124 when it ran past
# it), so a kernel that hangs on the device costs that step, not the
# session.
# With ZP_PREBUILT=DIR it runs bench/gpu_prebuild.sh's binaries instead of
# building (when they are these sources' and their libraries resolve).
set -uo pipefail
cd "$(dirname "$0")/.."
# The H200 machine keeps cmake in the PyTorch environment (shared/reference/h200.md).
command -v cmake >/dev/null || export PATH=/opt/torch/.venv/bin:$PATH
out=${OUT:-build/gpu_check}
mkdir -p "$out"
summary=()
note() { summary+=("$1"); echo "$1"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
# The binaries: bench/gpu_prebuild.sh's copies (ZP_PREBUILT=DIR, carried to
# the machine) when their source stamp is these sources' and every library
# they need resolves here; otherwise built here.
bin=build-gpu
if [ -n "${ZP_PREBUILT:-}" ]; then
  export LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export ZEROPLAN_DATA_DIR=$PWD/models/data
  stamp=$(bench/source_stamp.sh)
  missing=$(ldd "$ZP_PREBUILT"/zeroplan "$ZP_PREBUILT"/tests/* "$ZP_PREBUILT"/bench/* 2>&1 | grep "not found" | sort -u || true)
  if [ "$(cat "$ZP_PREBUILT/SOURCE_STAMP" 2>/dev/null)" != "$stamp" ]; then
    note "prebuilt binaries in $ZP_PREBUILT are not these sources' (stamp $stamp): building here"
  elif [ -n "$missing" ]; then
    note "prebuilt binaries in $ZP_PREBUILT miss libraries here: $(echo $missing): building here"
  else
    bin=$ZP_PREBUILT
    note "using the prebuilt binaries in $bin (source stamp $stamp)"
  fi
fi
if [ "$bin" = build-gpu ]; then
  if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DZP_WITH_CUDA=ON > "$out/configure.log" 2>&1; then
    echo "configure failed: $out/configure.log"; tail -20 "$out/configure.log"; exit 1
  fi
  for target in cuda_ops_test cuda_model_test nccl_comm_test gpu_gemm_sweep gpu_attention_bench gpu_elementwise_bench host_optimizer_bench zeroplan; do
    if cmake --build build-gpu -j "$(nproc)" --target "$target" > "$out/build_$target.log" 2>&1; then
      note "built $target"
    else
      note "BUILD FAILED $target (log: $out/build_$target.log)"; tail -15 "$out/build_$target.log"
    fi
  done
fi
note "binaries ready after ${SECONDS} s"

failed=0
if [ -x $bin/tests/cuda_ops_test ]; then
  timeout 120 $bin/tests/cuda_ops_test -s --no-colors > "$out/cuda_ops_test.log" 2>&1; rc=$?
  note "cuda_ops_test exit code $rc (log: $out/cuda_ops_test.log)"; [ "$rc" -eq 0 ] || failed=1
fi
if [ -x $bin/tests/cuda_model_test ]; then
  timeout 150 $bin/tests/cuda_model_test -s --no-colors > "$out/cuda_model_test.log" 2>&1; rc=$?
  note "cuda_model_test exit code $rc (log: $out/cuda_model_test.log)"; [ "$rc" -eq 0 ] || failed=1
  if [ "$rc" -ne 0 ]; then
    # The same models on the row-kernel attention (the fallback, ZP_CUDA_ATTENTION=rows).
    ZP_CUDA_ATTENTION=rows timeout 150 $bin/tests/cuda_model_test -s --no-colors > "$out/cuda_model_test_rows.log" 2>&1; rc=$?
    note "cuda_model_test (ZP_CUDA_ATTENTION=rows) exit code $rc (log: $out/cuda_model_test_rows.log)"
  fi
fi
gpus=$(nvidia-smi -L | wc -l)  # one process per GPU under mpirun
if [ -x $bin/tests/nccl_comm_test ]; then
  timeout 90 mpirun --allow-run-as-root -np "$gpus" $bin/tests/nccl_comm_test -s --no-colors > "$out/nccl_comm_test.log" 2>&1; rc=$?
  note "nccl_comm_test on $gpus GPU(s) exit code $rc (log: $out/nccl_comm_test.log)"; [ "$rc" -eq 0 ] || failed=1
fi
# `zeroplan run --device cuda` under mpirun: the CLI's NCCL path (bootstrap
# over MPI, the rank's GPU, training over NCCL) on every GPU, a toy plan.
if [ -x $bin/zeroplan ]; then
  $bin/zeroplan emit --format zeroplan --model tests/data/models/tiny-gpt.json --gpu H200-141GB --gpus "$gpus" \
    --seq 32 --micro-batch 2 --zero 1 --out "$out/nccl_run" > "$out/nccl_run.log" 2>&1 &&
    timeout 120 mpirun --allow-run-as-root -np "$gpus" $bin/zeroplan run --device cuda --plan "$out/nccl_run/plan.json" \
      --steps 10 --out "$out/nccl_run/measured.json" >> "$out/nccl_run.log" 2>&1; rc=$?
  comm=$(python3 -c "import json;d=json.load(open('$out/nccl_run/measured.json'));print(d['communicator'], d['device'], 'loss', round(d['steps'][0]['loss'],3), '->', round(d['steps'][-1]['loss'],3))" 2>/dev/null)
  note "zeroplan run --device cuda under mpirun -np $gpus exit code $rc: ${comm:-no measurements} (log: $out/nccl_run.log)"
  [ "$rc" -eq 0 ] || failed=1
fi
# The throughput target first (GPT-2 XL, 8 x 1024, zeroplan then PyTorch
# eager on the same GPU), then the GEMM sweep, then the validation matrix in
# the time that is left of the budget (BUDGET_S, default 480 s from the
# start; validate rewrites its report after every case, so a cut keeps the
# cases it finished).
if [ -x $bin/zeroplan ]; then
  timeout 120 $bin/zeroplan validate --device cuda --model gpt2-1.5b --gpu H200-141GB --gpus 1 --seq 1024 \
    --micro-batch 8 --zero 0 --attention materialized --warmup 3 --steps 5 --out "$out/gpt2xl" > "$out/gpt2xl.log" 2>&1; rc=$?
  note "zeroplan GPT-2 XL 8 x 1024 (cuBLASLt attention) exit code $rc"
  timeout 120 $bin/zeroplan validate --device cuda --model gpt2-1.5b --gpu H200-141GB --gpus 1 --seq 1024 \
    --micro-batch 8 --zero 0 --attention flash --warmup 3 --steps 5 --out "$out/gpt2xl_flash" > "$out/gpt2xl_flash.log" 2>&1; rc=$?
  note "zeroplan GPT-2 XL 8 x 1024 (flash attention) exit code $rc"
fi
py=/opt/torch/.venv/bin/python3; [ -x "$py" ] || py=python3
timeout 120 "$py" bench/pytorch_gpt2_step.py > "$out/pytorch_gpt2xl.json" 2> "$out/pytorch_gpt2xl.log"; rc=$?
note "PyTorch GPT-2 XL 8 x 1024 exit code $rc"
ours=$(python3 -c "import json;print(json.load(open('$out/gpt2xl/validate.json'))['cases'][0]['step_time']['measured_s'])" 2>/dev/null)
theirs=$(python3 -c "import json;print(json.load(open('$out/pytorch_gpt2xl.json'))['step_s'])" 2>/dev/null)
if [ -n "$ours" ] && [ -n "$theirs" ]; then
  note "GPT-2 XL step: zeroplan (cuBLASLt attention) $ours s, PyTorch eager $theirs s, ratio $(python3 -c "print(round($ours/$theirs, 3))") (target <= 1)"
fi
flash=$(python3 -c "import json;print(json.load(open('$out/gpt2xl_flash/validate.json'))['cases'][0]['step_time']['measured_s'])" 2>/dev/null)
if [ -n "$flash" ] && [ -n "$theirs" ]; then
  note "GPT-2 XL step: zeroplan (flash attention) $flash s, PyTorch eager $theirs s, ratio $(python3 -c "print(round($flash/$theirs, 3))") (target <= 1)"
fi
# The attention paths alone (a few seconds).
if [ -x $bin/bench/gpu_attention_bench ]; then
  timeout 90 $bin/bench/gpu_attention_bench 5 > "$out/attention.csv" 2> "$out/attention.log"; rc=$?
  note "attention bench exit code $rc (file: $out/attention.csv)"
  [ "$rc" -eq 0 ] || failed=1
  if [ "$rc" -eq 0 ] && [ -x $bin/zeroplan ]; then
    $bin/zeroplan calibrate --gpu H200-141GB --attention "$out/attention.csv" --out "$out/h200-141gb.attention.json" \
      > "$out/calibrate_attention.txt" 2>&1; rc=$?
    note "calibrate from the attention kernels exit code $rc (files: $out/calibrate_attention.txt, $out/h200-141gb.attention.json)"
  fi
fi
# The memory-bound kernels alone against a device copy (a few seconds):
# what fraction of HBM each reaches, the evidence for hbm_fraction.
if [ -x $bin/bench/gpu_elementwise_bench ]; then
  timeout 60 $bin/bench/gpu_elementwise_bench 5 > "$out/elementwise.csv" 2> "$out/elementwise.log"; rc=$?
  note "elementwise bench exit code $rc (file: $out/elementwise.csv)"
  [ "$rc" -eq 0 ] || failed=1
  if [ "$rc" -eq 0 ] && [ -x $bin/zeroplan ]; then
    $bin/zeroplan calibrate --gpu H200-141GB --elementwise "$out/elementwise.csv" --out "$out/h200-141gb.elementwise.json" \
      > "$out/calibrate_elementwise.txt" 2>&1; rc_fit=$?
    note "calibrate hbm_fraction from the elementwise kernels exit code $rc_fit (files: $out/calibrate_elementwise.txt, $out/h200-141gb.elementwise.json)"
  fi
  if [ "$rc" -eq 0 ]; then
    note "$(python3 - "$out/elementwise.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
copy = rows[0]
bf16 = [r for r in rows if r["dtype"] == "bf16"]
def of(name): return next((float(r["of_copy"]) for r in bf16 if r["kernel"] == name), float("nan"))
print(f"elementwise: copy {float(copy['GBps']):.0f} GB/s; bf16 kernels {min(float(r['of_copy']) for r in bf16):.2f}-"
      f"{max(float(r['of_copy']) for r in bf16):.2f} of it (median {statistics.median(float(r['of_copy']) for r in bf16):.2f}); "
      f"layernorm backward {of('layernorm_backward'):.2f} with chunked sums, {of('layernorm_backward_one_pass_sums'):.2f} in one pass")
PY
)"
  fi
fi
# The GEMM sweep (shuffled rounds) and the time model's curve fitted to it.
if [ -x $bin/bench/gpu_gemm_sweep ] && [ -x $bin/zeroplan ]; then
  timeout 120 $bin/bench/gpu_gemm_sweep 5 > "$out/gemm_sweep.csv" 2> "$out/gemm_sweep.log"; rc=$?
  if [ "$rc" -eq 0 ]; then
    $bin/zeroplan calibrate --gpu H200-141GB --gemm "$out/gemm_sweep.csv" --out "$out/h200-141gb.json" \
      > "$out/calibrate.txt" 2>&1; rc=$?
  fi
  note "gemm sweep + calibrate exit code $rc (files: $out/gemm_sweep.csv, $out/calibrate.txt, $out/h200-141gb.json)"
  [ "$rc" -eq 0 ] || failed=1
fi
# The host's optimizer passes (ZeRO-Offload's CPU Adam) on every core: the
# rate the time model's cpu_adam_s_per_param stands for.
if [ -x $bin/bench/host_optimizer_bench ]; then
  timeout 60 $bin/bench/host_optimizer_bench --benchmark_min_time=0.5 > "$out/host_optimizer.txt" 2>&1; rc=$?
  note "host optimizer bench exit code $rc: $(grep -m1 'BM_HostAdamW_bf16/67108864' "$out/host_optimizer.txt" | grep -o 's/1e9 params=[^ ]*')"
fi

if [ -x $bin/zeroplan ]; then
  left=$(( ${BUDGET_S:-480} - SECONDS - 15 ))
  if [ "$left" -gt 30 ]; then
    timeout "$left" $bin/zeroplan validate --device cuda --matrix bench/data/validate_h200.json --warmup 1 --steps 2 \
      --out "$out/validate" > "$out/validate.log" 2>&1; rc=$?
    note "validate matrix on the GPU exit code $rc in ${left} s at most (report: $out/validate/report.md)"
    [ "$rc" -eq 0 ] || failed=1
    # The time model's remaining fields fitted to the compute phases just
    # measured (the GEMM curve from the sweep held), in a second file beside
    # the GEMM-only one; a cut matrix still has the cases it finished.
    # The attention fields come from the kernels timed alone where they ran.
    gemm_flag=(); [ -s "$out/gemm_sweep.csv" ] && gemm_flag=(--gemm "$out/gemm_sweep.csv")
    [ -s "$out/h200-141gb.attention.json" ] && gemm_flag+=(--attention "$out/attention.csv")
    [ -s "$out/h200-141gb.elementwise.json" ] && gemm_flag+=(--elementwise "$out/elementwise.csv")
    $bin/zeroplan calibrate --gpu H200-141GB "${gemm_flag[@]}" --validate "$out/validate/validate.json" \
      --out "$out/h200-141gb.compute.json" > "$out/calibrate_compute.txt" 2>&1; rc=$?
    note "calibrate from the validate run's compute phases exit code $rc (files: $out/calibrate_compute.txt, $out/h200-141gb.compute.json)"
  else
    note "validate matrix skipped: ${left} s of the budget left"; failed=1
  fi
fi

echo
echo "== what the GPU tests measured and found"
grep -hE "MESSAGE|ERROR|Status" "$out"/cuda_ops_test.log "$out"/cuda_model_test.log "$out"/nccl_comm_test.log 2>/dev/null | sed 's/.*MESSAGE: //' | tail -70
python3 - "$out/validate/validate.json" <<'PY' 2>/dev/null || grep -E "^case|peak error|not run|FAILED" "$out/validate.log" 2>/dev/null | head -45
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
pct = lambda x: "%+.1f%%" % (100 * x) if isinstance(x, (int, float)) else "-"
print("%-3s %-62s %8s %8s %8s %8s %6s" % ("#", "case", "peak", "step", "device", "context", "frag"))
for i, c in enumerate(cases):
    if not c.get("run"):
        print("%-3d %-62s %s" % (i, c["name"][:62], ("FAILED: " if c.get("failed") else "not run: ") + c["why_not"][:90]))
        continue
    d = c.get("device_view", {})
    print("%-3d %-62s %8s %8s %8s %8s %6s" % (i, c["name"][:62], pct(c["memory"]["peak"]["compared_error"]),
          pct(c["step_time"].get("error")), pct(d.get("error")), pct(d.get("runtime_overheads", {}).get("error")),
          "%.1f%%" % (100 * d.get("fragmentation", {}).get("measured_fraction", 0))))
PY
[ -f "$out/calibrate.txt" ] && head -4 "$out/calibrate.txt"
[ -f "$out/calibrate_attention.txt" ] && grep -A5 "^Attention fields" "$out/calibrate_attention.txt"
[ -f "$out/calibrate_elementwise.txt" ] && grep -A4 "^hbm_fraction of" "$out/calibrate_elementwise.txt"
[ -f "$out/calibrate_compute.txt" ] && grep -A4 "^Attention, HBM" "$out/calibrate_compute.txt"
[ -f "$out/attention.csv" ] && { column -t -s, "$out/attention.csv" 2>/dev/null || cat "$out/attention.csv"; }
echo "== summary"
printf '%s\n' "${summary[@]}"
exit "$failed"
