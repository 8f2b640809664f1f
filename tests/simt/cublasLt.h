// Stands in for cuBLASLt on the host emulator (simt.h), the calls
// kernels/matmul_cublaslt.cu makes: a column-major product
//   D_i = alpha op(A_i) op(B_i) + beta C_i [+ bias on every column], i < batch count,
// over strided batches, A and B in fp32 or bf16, D (and C, the same matrix
// here) in fp32 or bf16, summed in fp32 in k order and rounded once; the
// transposes, the bias epilogue, the layouts' rows, columns, leading
// dimension, batch count and stride, as cuBLASLt's documentation defines
// them. Workspace and alignment preferences are accepted and not needed;
// the heuristic always finds the one algorithm. A layout whose shape does
// not match the product's is CUBLAS_STATUS_INVALID_VALUE, as cuBLASLt
// answers, so a wrong plan fails here as it would on a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasLtEpilogue_t { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 };
enum cublasLtMatmulDescAttributes_t {
  CUBLASLT_MATMUL_DESC_TRANSA,
  CUBLASLT_MATMUL_DESC_TRANSB,
  CUBLASLT_MATMUL_DESC_EPILOGUE,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER
};
enum cublasLtMatrixLayoutAttribute_t { CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET };
enum cublasLtMatmulPreferenceAttributes_t {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES
};

struct cublasLtContext {};
struct cublasLtMatmulDescOpaque_t {
  cublasOperation_t transa = CUBLAS_OP_N, transb = CUBLAS_OP_N;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  const void* bias = nullptr;
};
struct cublasLtMatrixLayoutOpaque_t {
  cudaDataType_t type;
  uint64_t rows, cols;
  int64_t ld;
  int32_t count = 1;
  int64_t stride = 0;
};
struct cublasLtMatmulPreferenceOpaque_t {};
struct cublasLtMatmulAlgo_t {
  uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
};
using cublasLtHandle_t = cublasLtContext*;
using cublasLtMatmulDesc_t = cublasLtMatmulDescOpaque_t*;
using cublasLtMatrixLayout_t = cublasLtMatrixLayoutOpaque_t*;
using cublasLtMatmulPreference_t = cublasLtMatmulPreferenceOpaque_t*;

inline const char* cublasLtGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                                                                                                 : "CUBLAS_STATUS_NOT_SUPPORTED";
}
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
  *h = new cublasLtContext;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute, cudaDataType_t scale) {
  if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  *d = new cublasLtMatmulDescOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
  delete d;
  return CUBLAS_STATUS_SUCCESS;
}
namespace simt {

// An attribute's value into its field, when its size is the field's.
template <class Field>
cublasStatus_t set_attribute(Field& field, const void* value, size_t bytes) {
  if (bytes != sizeof(Field)) return CUBLAS_STATUS_INVALID_VALUE;
  std::memcpy(&field, value, bytes);
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace simt

inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                                     const void* value, size_t bytes) {
  switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA: return simt::set_attribute(d->transa, value, bytes);
    case CUBLASLT_MATMUL_DESC_TRANSB: return simt::set_attribute(d->transb, value, bytes);
    case CUBLASLT_MATMUL_DESC_EPILOGUE: return simt::set_attribute(d->epilogue, value, bytes);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER: return simt::set_attribute(d->bias, value, bytes);
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType_t type, uint64_t rows,
                                                 uint64_t cols, int64_t ld) {
  if (ld < static_cast<int64_t>(rows)) return CUBLAS_STATUS_INVALID_VALUE;  // column-major: ld >= rows
  *l = new cublasLtMatrixLayoutOpaque_t{type, rows, cols, ld};
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
  delete l;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a,
                                                       const void* value, size_t bytes) {
  return a == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT ? simt::set_attribute(l->count, value, bytes)
                                                 : simt::set_attribute(l->stride, value, bytes);
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
  *p = new cublasLtMatmulPreferenceOpaque_t;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
  delete p;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t, cublasLtMatmulPreferenceAttributes_t,
                                                           const void*, size_t) {
  return CUBLAS_STATUS_SUCCESS;
}

namespace simt {

inline float load_element(const void* base, cudaDataType_t type, size_t at) {
  if (type == CUDA_R_32F) return static_cast<const float*>(base)[at];
  return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[at]);
}
inline void store_element(void* base, cudaDataType_t type, size_t at, float x) {
  if (type == CUDA_R_32F) {
    static_cast<float*>(base)[at] = x;
  } else {
    static_cast<__nv_bfloat16*>(base)[at] = __float2bfloat16(x);
  }
}

// The product's shape from the layouts: op(A) m x k, op(B) k x n, D m x n.
inline bool product_shape(const cublasLtMatmulDescOpaque_t& d, const cublasLtMatrixLayoutOpaque_t& a,
                          const cublasLtMatrixLayoutOpaque_t& b, const cublasLtMatrixLayoutOpaque_t& dl) {
  const uint64_t m = d.transa == CUBLAS_OP_N ? a.rows : a.cols, ka = d.transa == CUBLAS_OP_N ? a.cols : a.rows;
  const uint64_t kb = d.transb == CUBLAS_OP_N ? b.rows : b.cols, n = d.transb == CUBLAS_OP_N ? b.cols : b.rows;
  return ka == kb && m == dl.rows && n == dl.cols && a.count == dl.count && b.count == dl.count;
}

}  // namespace simt

inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                                     cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t, cublasLtMatrixLayout_t dl,
                                                     cublasLtMatmulPreference_t, int requested,
                                                     cublasLtMatmulHeuristicResult_t* results, int* found) {
  if (requested < 1 || !simt::product_shape(*d, *a, *b, *dl)) return CUBLAS_STATUS_INVALID_VALUE;
  results[0] = cublasLtMatmulHeuristicResult_t{};
  *found = 1;
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const void* alpha, const void* A,
                                     cublasLtMatrixLayout_t la, const void* B, cublasLtMatrixLayout_t lb, const void* beta,
                                     const void* C, cublasLtMatrixLayout_t lc, void* D, cublasLtMatrixLayout_t ld,
                                     const cublasLtMatmulAlgo_t*, void*, size_t, cudaStream_t) {
  if (!simt::product_shape(*d, *la, *lb, *ld) || C != D || lc->rows != ld->rows || lc->ld != ld->ld) {
    return CUBLAS_STATUS_INVALID_VALUE;  // this stand-in computes D in place of C only
  }
  const float a_scale = *static_cast<const float*>(alpha), b_scale = *static_cast<const float*>(beta);
  const bool ta = d->transa == CUBLAS_OP_T, tb = d->transb == CUBLAS_OP_T;
  const uint64_t m = ld->rows, n = ld->cols, k = ta ? la->rows : la->cols;
  const bool bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS;
  if (bias && d->bias == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  for (int32_t batch = 0; batch < ld->count; ++batch) {
    const size_t a0 = static_cast<size_t>(batch * la->stride), b0 = static_cast<size_t>(batch * lb->stride);
    const size_t d0 = static_cast<size_t>(batch * ld->stride);
    for (uint64_t j = 0; j < n; ++j) {
      for (uint64_t i = 0; i < m; ++i) {
        float sum = 0;
        for (uint64_t p = 0; p < k; ++p) {
          // op(A)(i, p) and op(B)(p, j), column-major with their leading dimensions.
          const size_t ai = a0 + (ta ? p + i * static_cast<size_t>(la->ld) : i + p * static_cast<size_t>(la->ld));
          const size_t bi = b0 + (tb ? j + p * static_cast<size_t>(lb->ld) : p + j * static_cast<size_t>(lb->ld));
          sum += simt::load_element(A, la->type, ai) * simt::load_element(B, lb->type, bi);
        }
        const size_t di = d0 + i + j * static_cast<size_t>(ld->ld);
        float value = a_scale * sum + (b_scale != 0.0f ? b_scale * simt::load_element(D, ld->type, di) : 0.0f);
        if (bias) value += simt::load_element(d->bias, ld->type, i);
        simt::store_element(D, ld->type, di, value);
      }
    }
  }
  return CUBLAS_STATUS_SUCCESS;
}
