#include "kernels/cuda_common.cuh"
#include "kernels/elementwise_cuda.h"

namespace zp::cuda {
namespace {

template <class D>
__global__ void add_kernel(D* out, const D* a, const D* b, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = from_f<D>(to_f(a[i]) + to_f(b[i]));
  }
}

template <class D>
__global__ void residual_backward_kernel(D* da, D* db, const D* dout, size_t n) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const float g = to_f(dout[i]);
    da[i] = from_f<D>(to_f(da[i]) + g);
    db[i] = from_f<D>(to_f(db[i]) + g);
  }
}

template <class To, class From>
__global__ void add_into_kernel(To* dst, const From* src, size_t n, bool accumulate) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    dst[i] = from_f<To>((accumulate ? to_f(dst[i]) : 0.0f) + to_f(src[i]));
  }
}

}  // namespace

template <class T>
void add(T* out, const T* a, const T* b, size_t n) {
  if (n == 0) return;
  launch_kernel(add_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(out), dev(a), dev(b), n);
  check_launch("add");
}

template <class T>
void residual_backward(T* da, T* db, const T* dout, size_t n) {
  if (n == 0) return;
  launch_kernel(residual_backward_kernel<device_t<T>>, blocks_for(n), kBlock, 0, dev(da), dev(db), dev(dout), n);
  check_launch("residual_backward");
}

template <class T>
void add_into(T* dst, const T* src, size_t n, bool accumulate) {
  if (n == 0) return;
  launch_kernel(add_into_kernel<device_t<T>, device_t<T>>, blocks_for(n), kBlock, 0, dev(dst), dev(src), n, accumulate);
  check_launch("add_into");
}

template <class T>
void add_into_fp32(float* dst, const T* src, size_t n, bool accumulate) {
  if (n == 0) return;
  launch_kernel(add_into_kernel<float, device_t<T>>, blocks_for(n), kBlock, 0, dst, dev(src), n, accumulate);
  check_launch("add_into_fp32");
}

#define ZP_CUDA_ELEMENTWISE(T)                                            \
  template void add<T>(T*, const T*, const T*, size_t);                   \
  template void residual_backward<T>(T*, T*, const T*, size_t);           \
  template void add_into<T>(T*, const T*, size_t, bool);                  \
  template void add_into_fp32<T>(float*, const T*, size_t, bool);
ZP_CUDA_ELEMENTWISE(float)
ZP_CUDA_ELEMENTWISE(Bf16)
#undef ZP_CUDA_ELEMENTWISE

}  // namespace zp::cuda
