// kernels/matmul_cublaslt.h. cuBLASLt is column-major: a row-major (R,C)
// matrix is a column-major (C,R) one, so each row-major product is written
// as its transpose (see each call) and no data moves.
#include "kernels/matmul_cublaslt.h"

#include <cublasLt.h>

#include <array>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda_common.cuh"
#include "kernels/matmul_plan.h"

namespace zp::cuda {
namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string(what) + ": " + cublasLtGetStatusString(s));
}

template <class T>
cudaDataType_t data_type() {
  return std::is_same_v<T, float> ? CUDA_R_32F : CUDA_R_16BF;
}

// D (m,n) = alpha op(A) op(B) + beta D [+ bias (m) on every column],
// column-major, `count` times over strided batches.
struct Gemm {
  bool transa = false, transb = false;
  int m = 0, n = 0, k = 0;
  const void* a = nullptr;
  int lda = 0;
  const void* b = nullptr;
  int ldb = 0;
  void* d = nullptr;
  int ldd = 0;
  float alpha = 1, beta = 0;
  const void* bias = nullptr;
  int count = 1;
  int64_t stride_a = 0, stride_b = 0, stride_d = 0;
};

// The batch count and stride of a layout (nothing for one matrix).
void batch(cublasLtMatrixLayout_t layout, int count, int64_t stride, const char* what) {
  if (count == 1) return;
  check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)), what);
  check(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
        what);
}

// The alignment, in bytes (at most 256), every matrix of a batch starting at
// p, `stride_bytes` apart, is known to have. cuBLASLt's heuristic assumes 256
// unless told (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), and attention's heads
// start hs elements apart; PyTorch tells it the same way (CUDABlas.cpp).
uint32_t alignment(const void* p, int64_t stride_bytes) {
  const auto address = reinterpret_cast<uintptr_t>(p) | static_cast<uintptr_t>(stride_bytes);
  uint32_t a = 256;
  while (a > 1 && address % a != 0) a /= 2;
  return a;
}

size_t bytes_of(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

// What the heuristic's answer depends on: types, operations, shapes,
// strides, the epilogue and the alignments (not the pointers or scalars).
using ShapeKey = std::array<int64_t, 18>;
using AlgorithmCache = std::map<ShapeKey, cublasLtMatmulAlgo_t>;

// A and B of `type`, D of `d_type` (fp32 scores from bf16 operands). The
// heuristic is asked once per shape (`cache`): a step makes thousands of
// products of a few dozen shapes, and asking costs tens of microseconds.
void run(cublasLtHandle_t handle, AlgorithmCache& cache, cudaDataType_t type, cudaDataType_t d_type, const Gemm& g,
         void* workspace, size_t workspace_bytes, const char* what) {
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
    check(cublasLtMatrixLayoutCreate(&ld, d_type, g.m, g.n, g.ldd), what);
    batch(la, g.count, g.stride_a, what);
    batch(lb, g.count, g.stride_b, what);
    batch(ld, g.count, g.stride_d, what);
    check(cublasLtMatmulPreferenceCreate(&pref), what);
    const uint64_t bytes = workspace_bytes;
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &bytes, sizeof(bytes)), what);
    const int64_t in = static_cast<int64_t>(bytes_of(type)), out = static_cast<int64_t>(bytes_of(d_type));
    const uint32_t align_a = alignment(g.a, g.stride_a * in), align_b = alignment(g.b, g.stride_b * in);
    const uint32_t align_d = alignment(g.d, g.stride_d * out);
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)),
          what);
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)),
          what);
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof(align_d)),
          what);
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof(align_d)),
          what);
    const ShapeKey key{type, d_type, g.transa, g.transb, g.m, g.n, g.k, g.lda, g.ldb, g.ldd, g.count, g.stride_a,
                       g.stride_b, g.stride_d, g.bias != nullptr, align_a, align_b, align_d};
    auto known = cache.find(key);
    if (known == cache.end()) {
      cublasLtMatmulHeuristicResult_t best{};
      int found = 0;
      check(cublasLtMatmulAlgoGetHeuristic(handle, op, la, lb, ld, ld, pref, 1, &best, &found), what);
      if (found == 0) throw std::runtime_error(std::string(what) + ": cuBLASLt has no algorithm for this product");
      known = cache.emplace(key, best.algo).first;
    }
    check(cublasLtMatmul(handle, op, &g.alpha, g.a, la, g.b, lb, &g.beta, g.d, ld, g.d, ld, &known->second, workspace,
                         workspace_bytes, nullptr),
          what);
  } catch (...) {
    release();
    throw;
  }
  release();
}

// dbias[oc] += sum over rows of dout[:, oc] (column_sums: a fixed order).
template <class D>
struct BiasGradient {
  static constexpr int K = 1;
  D* dbias;
  const D* dout;
  int OC;
  __device__ void values(size_t n, int oc, float* v) const { v[0] = to_f(dout[n * OC + oc]); }
  __device__ void store(int oc, const float* sums) const { dbias[oc] = from_f<D>(to_f(dbias[oc]) + sums[0]); }
};

}  // namespace

struct Matmul::Algorithms {
  AlgorithmCache cache;
};

Matmul::Matmul(void* workspace, size_t workspace_bytes)
    : algorithms_(std::make_unique<Algorithms>()), workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cublasLtHandle_t h = nullptr;
  check(cublasLtCreate(&h), "cublasLtCreate");
  handle_ = h;
}

Matmul::~Matmul() { cublasLtDestroy(static_cast<cublasLtHandle_t>(handle_)); }

namespace {

// The plans' products on a Matmul.
struct MatmulOps {
  Matmul& mm;
  template <class In, class Out>
  void gemm(const Matmul::Batched& p, const char* what) {
    mm.batched<In, Out>(p, what);
  }
};

}  // namespace

template <class T>
void Matmul::forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
  MatmulOps ops{*this};
  plan::linear_forward(ops, out, inp, weight, bias, N, C, OC);
}

template <class T>
void Matmul::backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int N, int C, int OC,
                      bool overwrite_dinp) {
  MatmulOps ops{*this};
  plan::linear_backward(ops, dinp, dweight, dout, inp, weight, N, C, OC, overwrite_dinp);
  if (dbias) {
    // The workspace is idle once the products are queued (one stream), so the column sums' chunks may use it.
    column_sums(BiasGradient<device_t<T>>{dev(dbias), dev(dout), OC}, N, OC, "matmul backward (bias)",
                Scratch{workspace_, workspace_bytes_});
  }
}

template <class T, class Out>
void Matmul::batched(const Batched& b, const char* what) {
  Gemm g;
  g.transa = b.transa, g.transb = b.transb;
  g.m = b.m, g.n = b.n, g.k = b.k;
  g.a = b.a, g.lda = b.lda, g.stride_a = b.stride_a;
  g.b = b.b, g.ldb = b.ldb, g.stride_b = b.stride_b;
  g.d = b.d, g.ldd = b.ldd, g.stride_d = b.stride_d;
  g.alpha = b.alpha, g.beta = b.beta, g.count = b.count;
  g.bias = b.bias;
  run(static_cast<cublasLtHandle_t>(handle_), algorithms_->cache, data_type<T>(), data_type<Out>(), g, workspace_,
      workspace_bytes_, what);
}

template void Matmul::batched<float, float>(const Batched&, const char*);
template void Matmul::batched<Bf16, Bf16>(const Batched&, const char*);
template void Matmul::batched<Bf16, float>(const Batched&, const char*);
template void Matmul::forward<float>(float*, const float*, const float*, const float*, int, int, int);
template void Matmul::forward<Bf16>(Bf16*, const Bf16*, const Bf16*, const Bf16*, int, int, int);
template void Matmul::backward<float>(float*, float*, float*, const float*, const float*, const float*, int, int, int, bool);
template void Matmul::backward<Bf16>(Bf16*, Bf16*, Bf16*, const Bf16*, const Bf16*, const Bf16*, int, int, int, bool);

}  // namespace zp::cuda
