// What the CUDA kernel files share: launch checking, the device storage type
// of a host-API type (Bf16 -> __nv_bfloat16), fp32 loads and rounded stores,
// grid sizing and block-wide reductions. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

constexpr int kBlock = 256;

// Throws with the kernel's name and CUDA's message when the last launch failed.
inline void check_launch(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(kernel) + ": " + cudaGetErrorString(e));
}

// Storage type on the device for T of the host API.
template <class T>
struct Device {
  using type = T;
};
template <>
struct Device<Bf16> {
  using type = __nv_bfloat16;
};
template <class T>
using device_t = typename Device<T>::type;

template <class T>
device_t<T>* dev(T* p) {
  return reinterpret_cast<device_t<T>*>(p);
}
template <class T>
const device_t<T>* dev(const T* p) {
  return reinterpret_cast<const device_t<T>*>(p);
}

__device__ inline float to_f(float x) { return x; }
__device__ inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class D>
__device__ inline D from_f(float x);
template <>
__device__ inline float from_f<float>(float x) { return x; }
template <>
__device__ inline __nv_bfloat16 from_f<__nv_bfloat16>(float x) { return __float2bfloat16(x); }  // round to nearest even

inline unsigned blocks_for(size_t n) { return static_cast<unsigned>(std::min<size_t>((n + kBlock - 1) / kBlock, 65535)); }
inline unsigned column_blocks(int C) { return static_cast<unsigned>((C + kBlock - 1) / kBlock); }

// Sum over the block (blockDim.x == kBlock); every thread gets the result.
__device__ inline float block_sum(float x) {
  __shared__ float partial[kBlock];
  __syncthreads();  // the buffer may still be read by a previous call
  partial[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  return partial[0];
}

// Maximum over the block (blockDim.x == kBlock); every thread gets the result.
__device__ inline float block_max(float x) {
  __shared__ float partial[kBlock];
  __syncthreads();
  partial[threadIdx.x] = x;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) partial[threadIdx.x] = fmaxf(partial[threadIdx.x], partial[threadIdx.x + stride]);
    __syncthreads();
  }
  return partial[0];
}

}  // namespace zp::cuda
