// The models' initial weights (executor/init_normal.h): the counter-based
// N(0, 0.02) fill, on every core, against the sequential generator it
// replaced (std::mt19937_64 with std::normal_distribution, as
// executor/gpt_model.cc drew them before). Every validate case and every
// `run` draws the whole model first, so this is time before each GPU run.
// Counter: seconds per 1e9 parameters.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "executor/init_normal.h"

namespace {

void set_rate(benchmark::State& state, size_t n) {
  const double params = static_cast<double>(n) * static_cast<double>(state.iterations());
  state.counters["s/1e9 params"] =
      benchmark::Counter(params / 1e9, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_InitNormal_counter(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> w(n);
  for (auto _ : state) {
    zp::fill_normal(w.data(), n, 0.02, 1234, 0);
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}
BENCHMARK(BM_InitNormal_counter)->Arg(16 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_InitNormal_mt19937(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  std::vector<float> w(n);
  std::mt19937_64 rng(1234);
  std::normal_distribution<double> normal(0.0, 0.02);
  for (auto _ : state) {
    for (float& x : w) x = static_cast<float>(normal(rng));
    benchmark::ClobberMemory();
  }
  set_rate(state, n);
}
BENCHMARK(BM_InitNormal_mt19937)->Arg(16 << 20)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
