// Matrix products through cuBLASLt (issue 7): the device counterparts of
// ops_cpu.h's matmul_forward and matmul_backward, row-major as the CPU
// kernels, in fp32 or bf16 storage with fp32 accumulation (compute type
// CUBLAS_COMPUTE_32F), the forward's bias fused as cuBLASLt's bias epilogue.
// The workspace is the caller's device memory, so it comes from the caching
// allocator under its cost-model tag (the cuBLAS workspace row) and the
// measurement shows it. Every call is checked: a failure throws
// std::runtime_error naming the product and cuBLASLt's status.
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

class Matmul {
 public:
  Matmul(void* workspace, size_t workspace_bytes);
  ~Matmul();
  Matmul(const Matmul&) = delete;
  Matmul& operator=(const Matmul&) = delete;

  // out (N,OC) = inp (N,C) weight (OC,C)^T + bias (OC); bias may be null.
  template <class T>
  void forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC);
  // dinp (N,C) += dout weight (= with overwrite_dinp); dweight (OC,C) += dout^T inp; dbias (OC) += column sums of dout (may be null).
  template <class T>
  void backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int N, int C, int OC,
                bool overwrite_dinp = false);

  // A strided batch of column-major products (attention's, kernels/attention_gemm_cuda.cu):
  // D_i = alpha op(A_i) op(B_i) + beta D_i for i < count, A_i = a + i * stride_a elements (B, D alike).
  struct Batched {
    bool transa = false, transb = false;
    int m = 0, n = 0, k = 0;
    const void* a = nullptr;
    int lda = 0;
    long long stride_a = 0;
    const void* b = nullptr;
    int ldb = 0;
    long long stride_b = 0;
    void* d = nullptr;
    int ldd = 0;
    long long stride_d = 0;
    float alpha = 1, beta = 0;
    int count = 1;
    const void* bias = nullptr;  // added to every column of D (m values; one matrix only)
  };
  // A and B of T (float or Bf16), D of Out (T, or float: fp32 scores of bf16 operands).
  template <class T, class Out>
  void batched(const Batched& g, const char* what);

 private:
  struct Algorithms;  // the heuristic's choice per product shape, asked once
  std::unique_ptr<Algorithms> algorithms_;
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_;
  size_t workspace_bytes_;
};

}  // namespace zp::cuda
