#!/usr/bin/env bash
# Builds, on a machine with nvcc but no GPU, the binaries bench/gpu_check.sh
# runs, so the GPU machine's scarce minutes go to measuring rather than
# compiling: configures build-gpu (Release, CUDA on: sm_80 and sm_90),
# builds gpu_check.sh's targets and copies them into DEST (default
# build-gpu-bin/, git-ignored) in the build tree's layout (zeroplan,
# tests/..., bench/...), with SOURCE_STAMP, the stamp of the sources they
# were built from (bench/source_stamp.sh). Then, on the GPU machine:
#   ZP_PREBUILT=build-gpu-bin bench/gpu_check.sh     (carry build-gpu-bin)
# gpu_check.sh uses the copies only if their stamp matches the sources
# there and every library they need resolves; otherwise it builds as
# before. h200.md: a binary built on the Debian 12 development machine ran
# unchanged on the H200 machine, which has the same CUDA 13, cuBLASLt, NCCL
# and Open MPI 4.1 sonames (the build links the MPI C API only).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-build-gpu-bin}
targets=(cuda_ops_test cuda_model_test nccl_comm_test gpu_gemm_sweep gpu_attention_bench gpu_elementwise_bench
         host_optimizer_bench zeroplan)
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DZP_WITH_CUDA=ON > /dev/null
cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}"
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp/tests" "$dest.tmp/bench"
for t in "${targets[@]}"; do
  src=$(find build-gpu -type f -name "$t" -perm -u+x | head -1)
  [ -n "$src" ] || { echo "gpu_prebuild.sh: $t was not built" >&2; exit 1; }
  rel=${src#build-gpu/}
  cp "$src" "$dest.tmp/$rel"
done
bench/source_stamp.sh > "$dest.tmp/SOURCE_STAMP"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest: ${#targets[@]} binaries, $(du -sh "$dest" | cut -f1), source stamp $(cat "$dest/SOURCE_STAMP")"
