// HeadView: where the attention heads of one tensor are, so one attention
// call serves GPT-2's packed (B,T,3C) q,k,v (a stride of 3C, k and v at
// offsets C and 2C) and Llama's separate q (B,T,NH,hs), k, v (B,T,KVH,hs):
// element (b, t, head, i) is at base[(b * T + t) * stride + head * hs + i].
// The host-side twin of kernels/attention_cuda.h's Heads (kernels/ cannot
// see executor/).
#pragma once

#include <cstddef>

namespace zp {

// The largest head the CUDA flash kernels take (kernels/flash_attention_cuda.h:
// a warp's lanes hold a row in registers; cuda_backend.cc checks the two agree).
constexpr int kCudaFlashMaxHeadDim = 256;

template <class T>
struct HeadView {
  T* base;
  size_t stride;  // elements from one token's row to the next
  T* at(int b, int Tn, int t, int head, int hs) const {
    return base + (static_cast<size_t>(b) * Tn + t) * stride + static_cast<size_t>(head) * hs;
  }
};

}  // namespace zp
