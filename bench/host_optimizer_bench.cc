// The offloaded optimizer's host passes (ZeRO-Offload's CPU Adam): AdamW over
// a partition's fp32 master weights and moments from bf16 gradients, and the
// reduced gradients' fp32 accumulation, as CpuBackend runs them
// (executor/adamw.h: OpenMP over every core above kHostParallelElems). The
// time model's rate to compare with: EfficiencyCurves::cpu_adam_s_per_param
// (0.22 s per 1e9 parameters for the whole host, ZeRO-Offload Sec. 5).
// Counters: parameters per second, and seconds per 1e9 parameters.
#include <benchmark/benchmark.h>

#include <vector>

#include "executor/adamw.h"
#include "executor/cpu_backend.h"

namespace {

void set_rate(benchmark::State& state, size_t n) {
  const double params = static_cast<double>(n) * static_cast<double>(state.iterations());
  state.counters["params/s"] = benchmark::Counter(params, benchmark::Counter::kIsRate);
  state.counters["s/1e9 params"] =
      benchmark::Counter(params / 1e9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

// A partition of `range(0)` parameters: bf16 gradients into AdamW, the bf16
// weights rounded from the updated fp32 master.
void BM_HostAdamW_bf16(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  zp::CpuBackend<zp::bf16> be(nullptr);
  std::vector<float> master(n, 0.5f), m(n, 0.0f), v(n, 0.0f);
  std::vector<zp::bf16> low(n), grads(n, zp::bf16(0.01f));
  int step = 0;
  for (auto _ : state) {
    be.adamw_model_grads(master.data(), low.data(), grads.data(), 1.0f, m.data(), v.data(), n, ++step, zp::AdamConfig{});
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}
BENCHMARK(BM_HostAdamW_bf16)->Arg(1 << 16)->Arg(64 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

// One unit's reduced gradients added into the host's fp32 partition.
void BM_HostGradientAccumulate_bf16(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  zp::CpuBackend<zp::bf16> be(nullptr);
  std::vector<float> acc(n, 0.0f);
  std::vector<zp::bf16> src(n, zp::bf16(0.01f));
  for (auto _ : state) {
    be.add_into_fp32(acc.data(), src.data(), n, true);
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}
BENCHMARK(BM_HostGradientAccumulate_bf16)->Arg(64 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
