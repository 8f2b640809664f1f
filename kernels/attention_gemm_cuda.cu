// kernels/attention_gemm_cuda.h: the plan of kernels/attention_gemm_plan.h
// (which products, which transposes and strides) run with cuBLASLt's strided
// batches and two row kernels, the causal softmax and its gradient.
#include "kernels/attention_gemm_cuda.h"

#include <cmath>

#include "kernels/attention_gemm_plan.h"
#include "kernels/cuda_common.cuh"

namespace zp::cuda {
namespace {

// One block per (head, query position) row: probs = causal softmax(scores).
template <class D>
__global__ void causal_softmax_kernel(D* probs, const float* scores, int Tn) {
  const size_t row = blockIdx.x;
  const int t = static_cast<int>(row % Tn);
  const float* s = scores + row * Tn;
  D* p = probs + row * Tn;
  float m = -INFINITY;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) m = fmaxf(m, s[t2]);
  m = block_max(m);
  float sum = 0;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) sum += expf(s[t2] - m);
  const float inv = 1.0f / block_sum(sum);
  for (int t2 = threadIdx.x; t2 < Tn; t2 += blockDim.x) p[t2] = from_f<D>(t2 <= t ? expf(s[t2] - m) * inv : 0.0f);
}

// One block per row: dscores = probs * (dprobs - <probs, dprobs>) * scale,
// zero above the diagonal. dscores may be dprobs itself (D = float): each
// element is read and then written by the same thread, after the row's sum.
template <class D>
__global__ void causal_softmax_backward_kernel(D* dscores, const float* dprobs, const D* probs, int Tn, float scale) {
  const size_t row = blockIdx.x;
  const int t = static_cast<int>(row % Tn);
  const float* dp = dprobs + row * Tn;
  const D* p = probs + row * Tn;
  D* ds = dscores + row * Tn;
  float dot = 0;
  for (int t2 = threadIdx.x; t2 <= t; t2 += blockDim.x) dot += to_f(p[t2]) * dp[t2];
  dot = block_sum(dot);
  for (int t2 = threadIdx.x; t2 < Tn; t2 += blockDim.x) {
    ds[t2] = from_f<D>(t2 <= t ? to_f(p[t2]) * (dp[t2] - dot) * scale : 0.0f);
  }
}

// The plan's operations on the GPU.
template <class T>
struct CudaOps {
  Matmul& mm;
  template <class In, class Out>
  void gemm(const Matmul::Batched& p, const char* what) {
    mm.batched<In, Out>(p, what);
  }
  void softmax(T* probs, const float* scores, int rows, int Tn) {
    launch_kernel(causal_softmax_kernel<device_t<T>>, static_cast<unsigned>(rows), kBlock, 0, dev(probs), scores, Tn);
    check_launch("attention softmax");
  }
  void softmax_backward(T* dscores, const float* dprobs, const T* probs, int rows, int Tn, float scale) {
    launch_kernel(causal_softmax_backward_kernel<device_t<T>>, static_cast<unsigned>(rows), kBlock, 0, dev(dscores), dprobs, dev(probs), Tn, scale);
    check_launch("attention softmax backward");
  }
};

}  // namespace

template <class T>
void attention_forward_gemm(Matmul& mm, Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v,
                            float* scores, int B, int Tn, int NH, int KVH, int hs) {
  CudaOps<T> ops{mm};
  plan::forward(ops, out, att, q, k, v, scores, B, Tn, NH, KVH, hs);
}

template <class T>
void attention_backward_gemm(Matmul& mm, Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dprobs, T* dscores,
                             Heads<const T> dout, Heads<const T> q, Heads<const T> k, Heads<const T> v, const T* att,
                             int B, int Tn, int NH, int KVH, int hs) {
  CudaOps<T> ops{mm};
  plan::backward(ops, dq, dk, dv, dprobs, dscores, dout, q, k, v, att, B, Tn, NH, KVH, hs);
}

template void attention_forward_gemm<float>(Matmul&, Heads<float>, float*, Heads<const float>, Heads<const float>,
                                            Heads<const float>, float*, int, int, int, int, int);
template void attention_forward_gemm<Bf16>(Matmul&, Heads<Bf16>, Bf16*, Heads<const Bf16>, Heads<const Bf16>,
                                           Heads<const Bf16>, float*, int, int, int, int, int);
template void attention_backward_gemm<float>(Matmul&, Heads<float>, Heads<float>, Heads<float>, float*, float*,
                                             Heads<const float>, Heads<const float>, Heads<const float>,
                                             Heads<const float>, const float*, int, int, int, int, int);
template void attention_backward_gemm<Bf16>(Matmul&, Heads<Bf16>, Heads<Bf16>, Heads<Bf16>, float*, Bf16*,
                                            Heads<const Bf16>, Heads<const Bf16>, Heads<const Bf16>, Heads<const Bf16>,
                                            const Bf16*, int, int, int, int, int);

}  // namespace zp::cuda
