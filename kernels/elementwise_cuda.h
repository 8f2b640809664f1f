// CUDA kernels of the executor's plain elementwise sums (issue 7): the
// residual connection and its gradient, gradient accumulation, and the
// trainer's adds of a reduced gradient chunk into its partition, the device
// counterparts of CpuBackend's residual_*, accumulate, add_into and
// add_into_fp32. Every pointer is device memory; T is float or Bf16 (fp32
// arithmetic, one rounding per stored value).
#pragma once

#include <cstddef>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

// out = a + b.
template <class T>
void add(T* out, const T* a, const T* b, size_t n);
// da += dout; db += dout.
template <class T>
void residual_backward(T* da, T* db, const T* dout, size_t n);
// dst = (accumulate ? dst : 0) + src, in dst's type.
template <class T>
void add_into(T* dst, const T* src, size_t n, bool accumulate);
template <class T>
void add_into_fp32(float* dst, const T* src, size_t n, bool accumulate);

}  // namespace zp::cuda
