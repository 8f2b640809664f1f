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

// out (N,OC) = inp (N,C) weight (OC,C)^T + bias (OC; may be null):
// out^T (OC,N) = weight (OC,C) inp^T (C,N), the weight buffer read
// column-major being (C,OC), transposed; the bias as the epilogue.
template <class T, class Ops>
void linear_forward(Ops& ops, T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
  Matmul::Batched g;
  g.transa = true;
  g.m = OC, g.n = N, g.k = C;
  g.a = weight, g.lda = C;
  g.b = inp, g.ldb = C;
  g.d = out, g.ldd = OC;
  g.bias = bias;
  ops.template gemm<T, T>(g, "matmul forward");
}

// dinp (N,C) += dout weight: dinp^T (C,N) += weight^T (C,OC) dout^T (OC,N);
// dweight (OC,C) += dout^T inp: dweight^T (C,OC) += inp^T (C,N) dout (N,OC),
// the dout buffer read column-major being (OC,N), transposed. (The bias
// gradient is a column sum, not a product.)
template <class T, class Ops>
void linear_backward(Ops& ops, T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, int N, int C, int OC) {
  Matmul::Batched gi;
  gi.m = C, gi.n = N, gi.k = OC;
  gi.a = weight, gi.lda = C;
  gi.b = dout, gi.ldb = OC;
  gi.d = dinp, gi.ldd = C;
  gi.beta = 1;
  ops.template gemm<T, T>(gi, "matmul backward (input)");
  Matmul::Batched gw;
  gw.transb = true;
  gw.m = C, gw.n = OC, gw.k = N;
  gw.a = inp, gw.lda = C;
  gw.b = dout, gw.ldb = OC;
  gw.d = dweight, gw.ldd = C;
  gw.beta = 1;
  ops.template gemm<T, T>(gw, "matmul backward (weight)");
}

}  // namespace zp::cuda::plan
