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
  // dinp (N,C) += dout weight; dweight (OC,C) += dout^T inp; dbias (OC) += column sums of dout (may be null).
  template <class T>
  void backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight, int N, int C, int OC);

 private:
  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_;
  size_t workspace_bytes_;
};

}  // namespace zp::cuda
