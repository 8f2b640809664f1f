// The products of a row-major linear layer and its gradients as cuBLASLt
// column-major ones (kernels/matmul_cublaslt.h), as a plan any executor of
// them can run: cuBLASLt (matmul_cublaslt.cu) and a host reference
// (tests/cublaslt_plan_test.cc, against the CPU kernels of ops_cpu.h). A
// row-major (R,C) matrix is a column-major (C,R) one, so each product is
// written as its transpose and no data moves. Plain C++.
// Ops: template <class In, class Out> void gemm(const Matmul::Batched&, const char* what);
#pragma once

#include "kernels/matmul_cublaslt.h"

namespace zp::cuda::plan {

// One column-major product D (m,n) = op(A) op(B) + beta D [+ bias].
inline Matmul::Batched product(bool transa, bool transb, int m, int n, int k, const void* a, int lda, const void* b, int ldb,
                               void* d, int ldd, float beta, const void* bias = nullptr) {
  Matmul::Batched g;
  g.transa = transa, g.transb = transb;
  g.m = m, g.n = n, g.k = k;
  g.a = a, g.lda = lda;
  g.b = b, g.ldb = ldb;
  g.d = d, g.ldd = ldd;
  g.beta = beta;
  g.bias = bias;
  return g;
}

// out (N,OC) = inp (N,C) weight (OC,C)^T + bias (OC; may be null):
// out^T (OC,N) = weight (OC,C) inp^T (C,N), the weight buffer read
// column-major being (C,OC), transposed; the bias as the epilogue.
template <class T, class Ops>
void linear_forward(Ops& ops, T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
  ops.template gemm<T, T>(product(true, false, OC, N, C, weight, C, inp, C, out, OC, 0.0f, bias), "matmul forward");
}

// dinp (N,C) += dout weight (or =, overwrite_dinp: beta 0, the old values
// never read): dinp^T (C,N) += weight^T (C,OC) dout^T (OC,N);
// dweight (OC,C) += dout^T inp: dweight^T (C,OC) += inp^T (C,N) dout (N,OC),
// the dout buffer read column-major being (OC,N), transposed. (The bias
// gradient is a column sum, not a product.)
template <class T, class Ops>
void linear_backward(Ops& ops, T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int N, int C, int OC,
                     bool overwrite_dinp = false) {
  ops.template gemm<T, T>(product(false, false, C, N, OC, weight, C, dout, OC, dinp, C, overwrite_dinp ? 0.0f : 1.0f),
                          "matmul backward (input)");
  ops.template gemm<T, T>(product(false, true, C, OC, N, inp, C, dout, OC, dweight, C, 1.0f), "matmul backward (weight)");
}

}  // namespace zp::cuda::plan
