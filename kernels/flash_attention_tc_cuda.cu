// The tensor-core flash kernels (flash_attention_tc_kernels.cuh) on the
// GPU (or its host emulator, tests/simt): CUDA's bf16 and WMMA under the
// names the kernel bodies use, the shared-memory opt-in past 48 KiB and
// checked launches.
#include "kernels/flash_attention_tc_cuda.h"

#include <mma.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_common.cuh"
#include "kernels/flash_tiles.h"

namespace zp::cuda {

using bf = __nv_bfloat16;
namespace wmma = nvcuda::wmma;

__device__ inline unsigned char* flash_shared_memory() { return dynamic_shared<unsigned char>(); }

}  // namespace zp::cuda

#include "kernels/flash_attention_tc_kernels.cuh"

namespace zp::cuda {
namespace {

namespace ft = flash_tiles;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A checked launch; kernels past 48 KiB of dynamic shared memory must say so first.
struct CudaLaunch {
  const char* what;
  template <class Kernel, class... Args>
  void operator()(Kernel kernel, dim3 grid, size_t shared_bytes, Args... args) const {
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared_bytes)),
          what);
    launch_kernel(kernel, grid, ft::kThreads, shared_bytes, args...);
    check_launch(what);
  }
};

}  // namespace

bool flash_attention_tc_supported(int hs) {
  if (!ft::eligible(hs)) return false;
  int device = 0, major = 0, optin = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), "cudaDeviceGetAttribute");
  const size_t most = std::max({ft::forward_layout(hs).bytes, ft::query_layout(hs).bytes, ft::key_value_layout(hs).bytes});
  return major >= 8 && most <= static_cast<size_t>(optin);
}

void flash_attention_forward_tc(Heads<Bf16> out, float* lse, Heads<const Bf16> q, Heads<const Bf16> k,
                                Heads<const Bf16> v, int B, int Tn, int NH, int KVH, int hs) {
  flash_tc::flash_tc_forward(CudaLaunch{"flash_attention_forward (tensor cores)"}, dev(out.base), out.token_stride, lse,
                             dev(q.base), q.token_stride, dev(k.base), k.token_stride, dev(v.base), v.token_stride, B, Tn,
                             NH, KVH, hs);
}

void flash_attention_backward_tc(Heads<Bf16> dq, Heads<Bf16> dk, Heads<Bf16> dv, const float* rowdot,
                                 Heads<const Bf16> dout, Heads<const Bf16> q, Heads<const Bf16> k, Heads<const Bf16> v,
                                 const float* lse, int B, int Tn, int NH, int KVH, int hs) {
  flash_tc::flash_tc_backward(CudaLaunch{"flash_attention_backward (tensor cores)"}, dev(dq.base), dq.token_stride,
                              dev(dk.base), dk.token_stride, dev(dv.base), dv.token_stride, rowdot, lse, dev(dout.base),
                              dout.token_stride, dev(q.base), q.token_stride, dev(k.base), k.token_stride, dev(v.base),
                              v.token_stride, B, Tn, NH, KVH, hs);
}

}  // namespace zp::cuda
