#!/usr/bin/env bash
# The kernels, the CUDA backend, the NCCL stand-in and the executor under
# AddressSanitizer and UndefinedBehaviorSanitizer, on the host emulator
# (tests/simt): device memory there is host memory, so a kernel that reads
# or writes past a buffer, or a misaligned or overflowing access anywhere,
# stops the test with its line, before it costs GPU time. Not part of
# .ci/run (the sanitized build takes about 15 minutes on 2 cores); run it
# after changing kernels/, executor/ or tests/simt/, after scripts/setup.sh.
# Builds in ${ZP_SANITIZE_BUILD:-build-asan} (build-asan/ is ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${ZP_SANITIZE_BUILD:-build-asan}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DZP_WITH_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" > /dev/null
targets=(simt_launch_test cuda_ops_emulated_test cuda_model_emulated_test nccl_comm_emulated_test
         gpt_model_test executor_test executor_memory_test mixed_precision_test ops_gradient_test mpi_comm_test)
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
# Boost.Context's fibers switch stacks, which ASan's fake stacks cannot follow.
export ASAN_OPTIONS=detect_stack_use_after_return=0:detect_leaks=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1  # undefined behaviour fails the test
export OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm=isolated \
       OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
failed=0
check() {
  local what=$1; shift
  if "$@" > "$build/sanitize_${what// /_}.log" 2>&1; then echo "ok      $what"; else echo "FAILED  $what (log: $build/sanitize_${what// /_}.log)"; failed=1; fi
}
check "simt launch" "$build/tests/simt_launch_test"
for order in forward reverse warps; do
  check "kernels $order" env ZP_SIMT_SCHEDULE=$order "$build/tests/cuda_ops_emulated_test"
  check "cuda backend $order" env ZP_SIMT_SCHEDULE=$order "$build/tests/cuda_model_emulated_test"
done
for np in 1 2 4; do
  check "nccl np$np" mpirun --allow-run-as-root --oversubscribe -np $np "$build/tests/nccl_comm_emulated_test"
done
for t in gpt_model_test executor_test executor_memory_test mixed_precision_test ops_gradient_test; do
  check "$t" "$build/tests/$t"
done
check "mpi np4" mpirun --allow-run-as-root --oversubscribe -np 4 "$build/tests/mpi_comm_test"
exit $failed
