// kernels/matmul_cublaslt.h. cuBLASLt is column-major: a row-major (R,C)
// matrix is a column-major (C,R) one, so each row-major product is written
// as its transpose (see each call) and no data moves.
#include "kernels/matmul_cublaslt.h"

#include <cublasLt.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_common.cuh"

namespace zp::cuda {
namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": " + cublasLtGetStatusString(s));
}

template <class T>
cudaDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

// D (m,n) = op(A) op(B) + beta D [+ bias (m) on every column], column-major.
struct Gemm {
  bool transa = false, transb = false;
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int lda = 0;
  const void* b = nullptr;
  int ldb = 0;
  void* d = nullptr;
  int ldd = 0;
  float beta = 0;
  const void* bias = nullptr;
};

void run(cublasLtHandle_t handle, cudaDataType_t type, const Gemm& g, void* workspace, size_t workspace_bytes,
         const char* what) {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  auto release = [&] {
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (op) cublasLtMatmulDescDestroy(op);
  };
  try {
    check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
    const cublasOperation_t ta = g.transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = g.transb ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), what);
    check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), what);
    if (g.bias) {
      const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
      check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)), what);
      check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g.bias, sizeof(g.bias)), what);
    }
    check(cublasLtMatrixLayoutCreate(&la, type, g.transa ? g.k : g.m, g.transa ? g.m : g.k, g.lda), what);
    check(cublasLtMatrixLayoutCreate(&lb, type, g.transb ? g.n : g.k, g.transb ? g.k : g.n, g.ldb), what);
    check(cublasLtMatrixLayoutCreate(&ld, type, g.m, g.n, g.ldd), what);
    check(cublasLtMatmulPreferenceCreate(&pref), what);
    const uint64_t bytes = workspace_bytes;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof(bytes)), what);
    cublasLtMatmulHeuristicResult_t best{};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, ld, ld, pref, 1, &best, &found), what);
    if (found == 0) throw std::runtime_error(std::string(what) + ": cuBLASLt has no algorithm for this product");
    const float alpha = 1.0f;
    check(cublasLtMatmul(handle, op, &alpha, g.a, la, g.b, lb, &g.beta, g.d, ld, g.d, ld, &best.algo, workspace,
                         workspace_bytes, nullptr),
          what);
  } catch (...) {
    release();
    throw;
  }
  release();
}

// dbias[oc] += sum over rows of dout[:, oc], one thread per column, rows in order.
template <class D>
__global__ void bias_backward_kernel(D* dbias, const D* dout, int N, int OC) {
  const int oc = blockIdx.x * blockDim.x + threadIdx.x;
  if (oc >= OC) return;
  float sum = 0;
  for (int n = 0; n < N; ++n) sum += to_f(dout[static_cast<size_t>(n) * OC + oc]);
  dbias[oc] = from_f<D>(to_f(dbias[oc]) + sum);
}

}  // namespace

Matmul::Matmul(void* workspace, size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "cublasLtCreate");
  handle_ = h;
}

Matmul::~Matmul() { cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_)); }

template <class T>
void Matmul::forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
  // out^T (OC,N) = weight (OC,C) inp^T (C,N): the weight buffer read column-major is (C,OC), transposed.
  Gemm g;
  g.transa = true;
  g.m = OC, g.n = N, g.k = C;
  g.a = weight, g.lda = C;
  g.b = inp, g.ldb = C;
  g.d = out, g.ldd = OC;
  g.bias = bias;
  run(static_cast<cublasLtHandle_t>(handle_), data_type<T>(), g, workspace_, workspace_bytes_, "matmul forward");
}

template <class T>
void Matmul::backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int N, int C, int OC) {
  const auto h = static_cast<cublasLtHandle_t>(handle_);
  // dinp^T (C,N) += weight^T (C,OC) dout^T (OC,N).
  Gemm gi;
  gi.m = C, gi.n = N, gi.k = OC;
  gi.a = weight, gi.lda = C;
  gi.b = dout, gi.ldb = OC;
  gi.d = dinp, gi.ldd = C;
  gi.beta = 1;
  run(h, data_type<T>(), gi, workspace_, workspace_bytes_, "matmul backward (input)");
  // dweight^T (C,OC) += inp^T (C,N) dout (N,OC): the dout buffer read column-major is (OC,N), transposed.
  Gemm gw;
  gw.transb = true;
  gw.m = C, gw.n = OC, gw.k = N;
  gw.a = inp, gw.lda = C;
  gw.b = dout, gw.ldb = OC;
  gw.d = dweight, gw.ldd = C;
  gw.beta = 1;
  run(h, data_type<T>(), gw, workspace_, workspace_bytes_, "matmul backward (weight)");
  if (dbias) {
    bias_backward_kernel<<<column_blocks(OC), kBlock>>>(dev(dbias), dev(dout), N, OC);
    check_launch("matmul backward (bias)");
  }
}

template void Matmul::forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void Matmul::forward<Bf16>(Bf16*, const Bf16*, const Bf16*, const Bf16*, int, int, int);
template void Matmul::backward<float>(float*, float*, float*, const float*, const float*, const float*, int, int, int);
template void Matmul::backward<Bf16>(Bf16*, Bf16*, Bf16*, const Bf16*, const Bf16*, const Bf16*, int, int, int);

}  // namespace zp::cuda
