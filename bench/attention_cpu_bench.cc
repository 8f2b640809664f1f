// The CPU backend's causal attention, forward and backward of one GPT-2 124M
// layer's heads (12 x 64, packed q,k,v) in bf16, materialised
// (executor/ops_cpu.h through fp32 frames) against flash-style
// (executor/ops_flash_cpu.h): what `zeroplan run|validate` spends on
// attention in each mode on the host. Counter: causal (query, key) pairs per
// second. Arguments: the sequence length.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "executor/cpu_backend.h"

namespace {

constexpr int kHeads = 12, kHeadDim = 64, kChannels = kHeads * kHeadDim;

struct Inputs {
  std::vector<zp::bf16> qkv, out, dout, dqkv;
  explicit Inputs(int T) {
    const size_t n = static_cast<size_t>(T) * kChannels;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    qkv.resize(3 * n), out.resize(n), dout.resize(n), dqkv.resize(3 * n);
    for (auto& x : qkv) x = zp::bf16(normal(rng));
    for (auto& x : dout) x = zp::bf16(normal(rng));
  }
};

void set_rate(benchmark::State& state, int T) {
  const double pairs = static_cast<double>(kHeads) * T * (T + 1) / 2 * static_cast<double>(state.iterations());
  state.counters["pairs/s"] = benchmark::Counter(pairs, benchmark::Counter::kIsRate);
}

void BM_AttentionMaterialised_bf16(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  zp::CpuBackend<zp::bf16> be(nullptr);
  Inputs in(T);
  std::vector<zp::bf16> att(static_cast<size_t>(kHeads) * T * T);
  for (auto _ : state) {
    be.attention_forward(in.out.data(), att.data(), in.qkv.data(), 1, T, kChannels, kHeads);
    be.attention_backward(in.dqkv.data(), in.dout.data(), in.qkv.data(), att.data(), 1, T, kChannels, kHeads);
    benchmark::ClobberMemory();
  }
  set_rate(state, T);
}
BENCHMARK(BM_AttentionMaterialised_bf16)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AttentionFlash_bf16(benchmark::State& state) {
  const int T = static_cast<int>(state.range(0));
  zp::CpuBackend<zp::bf16> be(nullptr);
  Inputs in(T);
  std::vector<float> lse(static_cast<size_t>(kHeads) * T);
  const size_t ld = 3 * kChannels;
  const zp::bf16* x = in.qkv.data();
  zp::bf16* dx = in.dqkv.data();
  for (auto _ : state) {
    be.flash_attention_forward({in.out.data(), kChannels}, lse.data(), {x, ld}, {x + kChannels, ld},
                               {x + 2 * kChannels, ld}, 1, T, kHeads, kHeads, kHeadDim);
    be.flash_attention_backward({dx, ld}, {dx + kChannels, ld}, {dx + 2 * kChannels, ld}, {in.dout.data(), kChannels},
                                {x, ld}, {x + kChannels, ld}, {x + 2 * kChannels, ld}, {in.out.data(), kChannels},
                                lse.data(), 1, T, kHeads, kHeads, kHeadDim);
    benchmark::ClobberMemory();
  }
  set_rate(state, T);
}
BENCHMARK(BM_AttentionFlash_bf16)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
