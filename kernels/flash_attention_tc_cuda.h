// Tensor-core flash attention for bf16 heads (internal to kernels/): the
// tiles of flash_tiles.h through WMMA's bf16 x bf16 -> fp32 fragments, the
// same formulas as the warp-per-row kernels of flash_attention_cuda.cu,
// which dispatch here when flash_attention_tc_supported(hs). Differences from them
// that a test sees: P and dS are rounded to bf16 before their products (as
// FlashAttention-2 does), and sums run in tile order.
#pragma once

#include "kernels/attention_cuda.h"

namespace zp::cuda {

// Whether this GPU takes the tensor-core kernels for head size hs: bf16
// WMMA (sm_80 and later), hs a multiple of 16 up to 128, and every kernel's
// shared memory within the device's opt-in limit per block.
bool flash_attention_tc_supported(int hs);

void flash_attention_forward_tc(Heads<Bf16> out, float* lse, Heads<const Bf16> q, Heads<const Bf16> k,
                                Heads<const Bf16> v, int B, int Tn, int NH, int KVH, int hs);
// Writes dq, dk and dv (every row of their heads); rowdot (B,NH,T) holds D = dout . out already.
void flash_attention_backward_tc(Heads<Bf16> dq, Heads<Bf16> dk, Heads<Bf16> dv, const float* rowdot,
                                 Heads<const Bf16> dout, Heads<const Bf16> q, Heads<const Bf16> k, Heads<const Bf16> v,
                                 const float* lse, int B, int Tn, int NH, int KVH, int hs);

}  // namespace zp::cuda
