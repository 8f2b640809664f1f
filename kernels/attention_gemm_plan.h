// The products and row passes of attention through cuBLASLt
// (kernels/attention_gemm_cuda.h), as a plan any executor of them can run:
// the CUDA one (cuBLASLt strided batches and row kernels,
// attention_gemm_cuda.cu) and a reference on the host
// (tests/cublaslt_plan_test.cc, which holds the plan's layouts, transposes
// and strides to the CPU attention kernels without a GPU). Plain C++.
//
// cuBLASLt is column-major: a row-major (R,C) matrix with row stride ld is a
// column-major (C,R) one with the same ld, so every product is written as its
// transpose and no data moves. Per sequence, for the j-th query head of each
// KV group (h = kh * g + j, g = NH / KVH), one batch over the KV heads kh:
// query-side operands step by g heads, key/value-side ones by one; scores
// and probabilities are row-major (NH, T, T), element (h, t, t2) at
// (h * T + t) * T + t2.
//
// Ops: template <class In, class Out> void gemm(const Matmul::Batched&, const char* what);
//      void softmax(T* probs, const float* scores, int rows, int Tn);   causal, row r is position r % Tn
//      void softmax_backward(T* dscores, const float* dprobs, const T* probs, int rows, int Tn, float scale);
#pragma once

#include <cmath>
#include <cstddef>

#include "kernels/attention_cuda.h"
#include "kernels/matmul_cublaslt.h"

namespace zp::cuda::plan {

struct Shape {
  int Tn, hs, g, KVH;
  long long TT() const { return static_cast<long long>(Tn) * Tn; }
  long long query_step() const { return static_cast<long long>(g) * hs; }  // the batch's step on the query side
};

// One sequence's q, k, v (or gradients): base and row stride.
template <class T>
struct Seq {
  T* base;
  int ld;
};
template <class T>
Seq<T> seq(Heads<T> h, int b, int Tn) {
  return {h.base + static_cast<size_t>(b) * Tn * h.token_stride, static_cast<int>(h.token_stride)};
}

// D (T x T, Out) = alpha * X Y^T over positions for query head j of each
// group: row-major D[t][t2] = alpha * sum_i X[t][i] Y[t2][i], X on the
// query side, Y on the key side.
template <class T, class Out, class Ops>
void scores(Ops& ops, Out* d, const T* x, int ldx, const T* y, int ldy, const Shape& s, int j, float alpha,
            const char* what) {
  Matmul::Batched p;
  p.transa = true;  // column-major D^T(t2, t) = Y (t2 x hs) . X^T (hs x t)
  p.m = s.Tn, p.n = s.Tn, p.k = s.hs;
  p.a = y, p.lda = ldy, p.stride_a = s.hs;
  p.b = x + static_cast<size_t>(j) * s.hs, p.ldb = ldx, p.stride_b = s.query_step();
  p.d = d + j * s.TT(), p.ldd = s.Tn, p.stride_d = s.g * s.TT();
  p.alpha = alpha;
  p.count = s.KVH;
  ops.template gemm<T, Out>(p, what);
}

// D (T x hs rows) = M . X over positions, M head j's row-major T x T matrix
// (probabilities or score gradients), column-major D^T = X^T op(M^T):
// `transposed` sums over M's first index, D[t2][i] = sum_t M[t][t2] X[t][i];
// otherwise over its second, D[t][i] = sum_t2 M[t][t2] X[t2][i].
template <class T, class Ops>
void positions(Ops& ops, T* d, int ldd, long long d_stride, const T* x, int ldx, long long x_stride, const T* m,
               bool transposed, const Shape& s, int j, float beta, const char* what) {
  Matmul::Batched p;
  p.transb = transposed;
  p.m = s.hs, p.n = s.Tn, p.k = s.Tn;
  p.a = x, p.lda = ldx, p.stride_a = x_stride;
  p.b = m + j * s.TT(), p.ldb = s.Tn, p.stride_b = s.g * s.TT();
  p.d = d, p.ldd = ldd, p.stride_d = d_stride;
  p.beta = beta;
  p.count = s.KVH;
  ops.template gemm<T, T>(p, what);
}

// att = causal softmax(q k^T / sqrt(hs)); out = att v (overwritten). scores: NH*T*T floats.
template <class T, class Ops>
void forward(Ops& ops, Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v, float* scores_fp32,
             int B, int Tn, int NH, int KVH, int hs) {
  const Shape s{Tn, hs, NH / KVH, KVH};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  for (int b = 0; b < B; ++b) {
    const Seq<const T> qb = seq(q, b, Tn), kb = seq(k, b, Tn), vb = seq(v, b, Tn);
    const Seq<T> ob = seq(out, b, Tn);
    T* p = att + static_cast<size_t>(b) * NH * s.TT();
    for (int j = 0; j < s.g; ++j) scores<T, float>(ops, scores_fp32, qb.base, qb.ld, kb.base, kb.ld, s, j, scale, "attention scores");
    ops.softmax(p, scores_fp32, NH * Tn, Tn);
    for (int j = 0; j < s.g; ++j) {
      // out[t][i] = sum_t2 P[t][t2] v[t2][i]
      positions<T>(ops, ob.base + static_cast<size_t>(j) * hs, ob.ld, s.query_step(), vb.base, vb.ld, hs, p, false, s, j,
                   0.0f, "attention output");
    }
  }
}

// Adds to dq, dk, dv. dprobs: NH*T*T floats; dscores: NH*T*T of T (for
// float it may be dprobs itself).
template <class T, class Ops>
void backward(Ops& ops, Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dprobs, T* dscores, Heads<const T> dout,
              Heads<const T> q, Heads<const T> k, Heads<const T> v, const T* att, int B, int Tn, int NH, int KVH, int hs) {
  const Shape s{Tn, hs, NH / KVH, KVH};
  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const long long qs = s.query_step();
  for (int b = 0; b < B; ++b) {
    const Seq<const T> qb = seq(q, b, Tn), kb = seq(k, b, Tn), vb = seq(v, b, Tn), db = seq(dout, b, Tn);
    const Seq<T> dqb = seq(dq, b, Tn), dkb = seq(dk, b, Tn), dvb = seq(dv, b, Tn);
    const T* p = att + static_cast<size_t>(b) * NH * s.TT();
    for (int j = 0; j < s.g; ++j) {
      // dv[t2][i] += sum_t P[t][t2] dout[t][i]; dP[t][t2] = sum_i dout[t][i] v[t2][i]
      positions<T>(ops, dvb.base, dvb.ld, hs, db.base + static_cast<size_t>(j) * hs, db.ld, qs, p, true, s, j, 1.0f,
                   "attention backward (values)");
      scores<T, float>(ops, dprobs, db.base, db.ld, vb.base, vb.ld, s, j, 1.0f, "attention backward (probabilities)");
    }
    ops.softmax_backward(dscores, dprobs, p, NH * Tn, Tn, scale);
    for (int j = 0; j < s.g; ++j) {
      // dq[t][i] += sum_t2 dS[t][t2] k[t2][i]; dk[t2][i] += sum_t dS[t][t2] q[t][i]
      positions<T>(ops, dqb.base + static_cast<size_t>(j) * hs, dqb.ld, qs, kb.base, kb.ld, hs, dscores, false, s, j, 1.0f,
                   "attention backward (queries)");
      positions<T>(ops, dkb.base, dkb.ld, hs, qb.base + static_cast<size_t>(j) * hs, qb.ld, qs, dscores, true, s, j, 1.0f,
                   "attention backward (keys)");
    }
  }
}

}  // namespace zp::cuda::plan
