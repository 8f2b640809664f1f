// The GPU's causal attention, each of the executor's kernels alone (issue 7),
// timed with CUDA events, the median of ROUNDS after one warm-up, at the
// shapes of the validation matrix's models:
//  - flash-tc: the tiled tensor-core flash kernels (flash_attention_tc_cuda.h),
//    bf16 heads of a multiple of 16 up to 128;
//  - flash-warp: the warp-per-row flash kernels (flash_attention_cuda.h) that
//    run everything else: fp32 heads, and bf16 heads the tiles do not take
//    (a Gemma-shaped 256);
//  - materialized: the scores through cuBLASLt beside the fused softmax
//    (attention_gemm_cuda.h), bf16.
// The path is named by the kernel that ran (flash_attention_tc_supported), so
// `zeroplan calibrate --attention` takes each row to its efficiency field.
// TFLOP/s count what the time model counts (costmodel/compute.h: 4 b a s^2 d
// forward, every position, and the kernel's attention_backward_ratio times
// that backward), so forward and backward rates compare.
// Prints CSV `model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops`.
// Usage: gpu_attention_bench [ROUNDS [TOKENS]] (TOKENS: the sequence length,
// 1,024 by default; the host emulator's build runs it at a few tokens).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "costmodel/attention_calibration.h"
#include "costmodel/compute.h"
#include "kernels/attention_gemm_cuda.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/flash_attention_tc_cuda.h"

namespace {

using zp::cuda::Bf16;
using zp::cuda::Heads;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A float rounded to bf16 (nearest even, CUDA's host-side conversion), as its bits.
Bf16 to_bf16(float x) {
  const __nv_bfloat16 b = __float2bfloat16(x);
  Bf16 bits;
  std::memcpy(&bits, &b, sizeof bits);
  return bits;
}

struct Case {
  const char* model;
  int B, Tn, NH, KVH, hs;
};

// An element from a float: bf16 bits, or the float itself.
template <class E>
E element(float x) {
  if constexpr (std::is_same_v<E, Bf16>) {
    return to_bf16(x);
  } else {
    return x;
  }
}

template <class E>
E* device_array(size_t n) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(E)), "cudaMalloc");
  check(cudaMemset(p, 0, n * sizeof(E)), "cudaMemset");
  return static_cast<E*>(p);
}

// The median over `rounds` of `work`'s time in milliseconds, after one untimed run.
double median_ms(int rounds, const std::function<void()>& work) {
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  work();
  check(cudaDeviceSynchronize(), "warm-up");
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    check(cudaEventRecord(start), "cudaEventRecord");
    work();
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  check(cudaEventDestroy(start), "cudaEventDestroy");
  check(cudaEventDestroy(stop), "cudaEventDestroy");
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

template <class E>
void run_case(const Case& c, int rounds, std::mt19937& rng) {
  constexpr bool kBf16 = std::is_same_v<E, Bf16>;
  const size_t q_width = static_cast<size_t>(c.NH) * c.hs, kv_width = static_cast<size_t>(c.KVH) * c.hs;
  const size_t tokens = static_cast<size_t>(c.B) * c.Tn, ld = q_width + 2 * kv_width;
  // q, k, v side by side per token (GPT-2's packed layout; Llama's heads by strides alike).
  std::vector<E> host(tokens * ld);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (E& x : host) x = element<E>(normal(rng));
  E* qkv = device_array<E>(tokens * ld);
  check(cudaMemcpy(qkv, host.data(), host.size() * sizeof(E), cudaMemcpyHostToDevice), "cudaMemcpy");
  for (size_t i = 0; i < tokens * q_width; ++i) host[i] = element<E>(normal(rng));
  E* dout = device_array<E>(tokens * q_width);
  check(cudaMemcpy(dout, host.data(), tokens * q_width * sizeof(E), cudaMemcpyHostToDevice), "cudaMemcpy");
  E* out = device_array<E>(tokens * q_width);
  E* dqkv = device_array<E>(tokens * ld);
  const size_t rows = static_cast<size_t>(c.B) * c.NH * c.Tn, one = static_cast<size_t>(c.NH) * c.Tn * c.Tn;
  float* lse = device_array<float>(rows);
  float* rowdot = device_array<float>(rows);
  const Heads<const E> q{qkv, ld}, k{qkv + q_width, ld}, v{qkv + q_width + kv_width, ld};
  const Heads<E> dq{dqkv, ld}, dk{dqkv + q_width, ld}, dv{dqkv + q_width + kv_width, ld};
  const Heads<E> o{out, q_width};
  const Heads<const E> oc{out, q_width}, d{dout, q_width};
  // FLOPs as the time model counts them (every position, not only the causal half).
  const double forward_flops = 4.0 * c.B * c.NH * static_cast<double>(c.Tn) * c.Tn * c.hs;
  auto report = [&](zp::AttentionKernel kernel, double f_ms, double b_ms) {
    const double backward_flops = zp::attention_backward_ratio(kernel) * forward_flops;
    std::printf("%s,%s,%s,%d,%d,%d,%d,%d,%.4f,%.4f,%.2f,%.2f\n", c.model, zp::csv_path(kernel), kBf16 ? "bf16" : "fp32", c.B,
                c.Tn, c.NH, c.KVH, c.hs, f_ms, b_ms, forward_flops / (f_ms * 1e-3) / 1e12, backward_flops / (b_ms * 1e-3) / 1e12);
    std::fflush(stdout);
  };

  const double flash_f = median_ms(rounds, [&] { zp::cuda::flash_attention_forward<E>(o, lse, q, k, v, c.B, c.Tn, c.NH, c.KVH, c.hs); });
  const double flash_b = median_ms(rounds, [&] {
    zp::cuda::flash_attention_backward<E>(dq, dk, dv, rowdot, d, q, k, v, oc, lse, c.B, c.Tn, c.NH, c.KVH, c.hs);
  });
  report(kBf16 && zp::cuda::flash_attention_tc_supported(c.hs) ? zp::AttentionKernel::FlashTensorCores
                                                                : zp::AttentionKernel::FlashWarp,
         flash_f, flash_b);
  auto release = [](std::initializer_list<void*> buffers) {
    for (void* p : buffers) check(cudaFree(p), "cudaFree");
  };
  // The materialised path in bf16 only: fp32 cases time fp32 training's flash
  // attention, the warp kernels.
  if constexpr (kBf16) {
    const size_t workspace_bytes = 32u << 20;
    void* workspace = device_array<unsigned char>(workspace_bytes);
    float* scores = device_array<float>(one);
    Bf16* low = device_array<Bf16>(one);
    Bf16* att = device_array<Bf16>(static_cast<size_t>(c.B) * one);
    zp::cuda::Matmul mm(workspace, workspace_bytes);
    const double gemm_f = median_ms(rounds, [&] {
      zp::cuda::attention_forward_gemm<Bf16>(mm, o, att, q, k, v, scores, c.B, c.Tn, c.NH, c.KVH, c.hs);
    });
    const double gemm_b = median_ms(rounds, [&] {
      zp::cuda::attention_backward_gemm<Bf16>(mm, dq, dk, dv, scores, low, d, q, k, v, att, c.B, c.Tn, c.NH, c.KVH, c.hs);
    });
    report(zp::AttentionKernel::Materialized, gemm_f, gemm_b);
    release({workspace, scores, low, att});
  }
  release({qkv, dout, out, dqkv, lse, rowdot});
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 5;
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 1024;
  if (rounds < 1 || tokens < 1) {
    std::fprintf(stderr, "gpu_attention_bench: ROUNDS and TOKENS must be positive integers\n");
    return 2;
  }
  try {
    std::mt19937 rng(11);
    std::printf("model,path,dtype,B,T,NH,KVH,hs,forward_ms,backward_ms,forward_tflops,backward_tflops\n");
    // GPT-2 XL at the throughput target's batch; GPT-2 124M; TinyLlama 1.1B
    // (grouped KV heads); a Llama-3.2-3B-shaped layer (hs 128).
    for (const Case& c : {Case{"gpt2-1.5b", 8, tokens, 25, 25, 64}, Case{"gpt2-124m", 8, tokens, 12, 12, 64},
                          Case{"tinyllama-1.1b", 4, tokens, 32, 4, 64}, Case{"llama-3.2-3b", 4, tokens, 24, 8, 128},
                          // Heads the tiles do not take: Gemma-2B-shaped (8 heads of 256, one KV head).
                          Case{"gemma-2b", 4, tokens, 8, 1, 256}}) {
      run_case<Bf16>(c, rounds, rng);
    }
    // fp32 training's flash attention: the warp kernels at two more head sizes.
    for (const Case& c : {Case{"gpt2-124m", 4, tokens, 12, 12, 64}, Case{"llama-3.2-3b", 2, tokens, 24, 8, 128}}) {
      run_case<float>(c, rounds, rng);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_attention_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
