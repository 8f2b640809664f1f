// kernels/attention_gemm_cuda.h. cuBLASLt is column-major: a row-major
// (R,C) matrix with row stride ld is a column-major (C,R) one with the same
// ld, so every product below is written as its transpose and no data moves.
// Per sequence, for the j-th query head of each KV group (h = kh * g + j,
// g = NH / KVH), a batch over the KV heads kh: query-side operands step by
// g heads, key/value-side ones by one; scores and probabilities are
// row-major (NH, T, T), element (h, t, t2) at (h * T + t) * T + t2.
#include "kernels/attention_gemm_cuda.h"

#include <cmath>

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

// The pieces of one sequence: its q, k, v (and gradients) bases and strides.
template <class T>
struct Seq {
  T* base;
  int ld;
};
template <class T>
Seq<T> seq(Heads<T> h, int b, int Tn) {
  return {h.base + static_cast<size_t>(b) * Tn * h.token_stride, static_cast<int>(h.token_stride)};
}

// Common shape of the products: the batch over KV heads for query head j of each group.
struct Shape {
  int Tn, hs, g, KVH;
  long long TT() const { return static_cast<long long>(Tn) * Tn; }
};

// D (T x T scores, fp32 or T) = alpha * X Y^T over positions: X the query side (head j of each
// group), Y the key side; row-major D[t][t2] = sum_i X[t][i] Y[t2][i].
template <class T, class Out>
void scores_product(Matmul& mm, Out* d, const T* x, int ldx, const T* y, int ldy, const Shape& s, int j, float alpha,
                    const char* what) {
  Matmul::Batched p;
  p.transa = true;  // column-major D^T(t2, t) = Y (t2 x hs) . X^T (hs x t)
  p.m = s.Tn, p.n = s.Tn, p.k = s.hs;
  p.a = y, p.lda = ldy, p.stride_a = s.hs;
  p.b = x + static_cast<size_t>(j) * s.hs, p.ldb = ldx, p.stride_b = static_cast<long long>(s.g) * s.hs;
  p.d = d + j * s.TT(), p.ldd = s.Tn, p.stride_d = s.g * s.TT();
  p.alpha = alpha;
  p.count = s.KVH;
  mm.batched<T, Out>(p, what);
}

// D (T x hs rows) = X (T x hs rows) . M over positions, column-major
// D^T (hs x T) = X^T (hs x T) . op(M^T), with M head j's row-major T x T
// matrix (probabilities or score gradients): `transposed` sums over M's
// first index, D[t2][i] = sum_t M[t][t2] X[t][i]; otherwise over its
// second, D[t][i] = sum_t2 M[t][t2] X[t2][i]. Strides step over the batch.
template <class T>
void positions_product(Matmul& mm, T* d, int ldd, long long d_stride, const T* x, int ldx, long long x_stride, const T* m,
                       bool transposed, const Shape& s, int j, float beta, const char* what) {
  Matmul::Batched p;
  p.transb = transposed;
  p.m = s.hs, p.n = s.Tn, p.k = s.Tn;
  p.a = x, p.lda = ldx, p.stride_a = x_stride;
  p.b = m + j * s.TT(), p.ldb = s.Tn, p.stride_b = s.g * s.TT();
  p.d = d, p.ldd = ldd, p.stride_d = d_stride;
  p.beta = beta;
  p.count = s.KVH;
  mm.batched<T, T>(p, what);
}

}  // namespace

template <class T>
void attention_forward_gemm(Matmul& mm, Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v,
                            float* scores, int B, int Tn, int NH, int KVH, int hs) {
  const Shape s{Tn, hs, NH / KVH, KVH};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    const Seq<const T> qb = seq(q, b, Tn), kb = seq(k, b, Tn), vb = seq(v, b, Tn);
    const Seq<T> ob = seq(out, b, Tn);
    T* p = att + static_cast<size_t>(b) * NH * s.TT();
    for (int j = 0; j < s.g; ++j) scores_product<T, float>(mm, scores, qb.base, qb.ld, kb.base, kb.ld, s, j, scale, "attention scores");
    causal_softmax_kernel<<<static_cast<unsigned>(NH * Tn), kBlock>>>(dev(p), scores, Tn);
    check_launch("attention softmax");
    const long long q_side = static_cast<long long>(s.g) * hs;  // the batch's step on the query side
    for (int j = 0; j < s.g; ++j) {
      // out[t][i] = sum_t2 P[t][t2] v[t2][i]
      positions_product<T>(mm, ob.base + static_cast<size_t>(j) * hs, ob.ld, q_side, vb.base, vb.ld, hs, p, false, s, j, 0.0f,
                           "attention output");
    }
  }
}

template <class T>
void attention_backward_gemm(Matmul& mm, Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dprobs, T* dscores,
                             Heads<const T> dout, Heads<const T> q, Heads<const T> k, Heads<const T> v, const T* att,
                             int B, int Tn, int NH, int KVH, int hs) {
  const Shape s{Tn, hs, NH / KVH, KVH};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    const Seq<const T> qb = seq(q, b, Tn), kb = seq(k, b, Tn), vb = seq(v, b, Tn), db = seq(dout, b, Tn);
    const Seq<T> dqb = seq(dq, b, Tn), dkb = seq(dk, b, Tn), dvb = seq(dv, b, Tn);
    const T* p = att + static_cast<size_t>(b) * NH * s.TT();
    const long long q_side = static_cast<long long>(s.g) * hs;
    for (int j = 0; j < s.g; ++j) {
      // dv[t2][i] += sum_t P[t][t2] dout[t][i]
      positions_product<T>(mm, dvb.base, dvb.ld, hs, db.base + static_cast<size_t>(j) * hs, db.ld, q_side, p, true, s, j, 1.0f,
                           "attention backward (values)");
      // dP[t][t2] = sum_i dout[t][i] v[t2][i], the scores' product with dout for q and v for k.
      scores_product<T, float>(mm, dprobs, db.base, db.ld, vb.base, vb.ld, s, j, 1.0f, "attention backward (probabilities)");
    }
    causal_softmax_backward_kernel<<<static_cast<unsigned>(NH * Tn), kBlock>>>(dev(dscores), dprobs, dev(p), Tn, scale);
    check_launch("attention softmax backward");
    for (int j = 0; j < s.g; ++j) {
      // dq[t][i] += sum_t2 dS[t][t2] k[t2][i]; dk[t2][i] += sum_t dS[t][t2] q[t][i]
      positions_product<T>(mm, dqb.base + static_cast<size_t>(j) * hs, dqb.ld, q_side, kb.base, kb.ld, hs, dscores, false, s, j,
                           1.0f, "attention backward (queries)");
      positions_product<T>(mm, dkb.base, dkb.ld, hs, qb.base + static_cast<size_t>(j) * hs, qb.ld, q_side, dscores, true, s, j,
                           1.0f, "attention backward (keys)");
    }
  }
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
