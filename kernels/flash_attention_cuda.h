// Flash-style causal attention on the GPU (issue 7's goal for attention):
// the device counterpart of executor/ops_flash_cpu.h, the same formulas in
// fp32 arithmetic, never holding the (T x T) scores or probabilities.
// Forward: one warp per query row (b, h, t), its lanes splitting the head's
// hs elements; an online softmax over the keys t2 <= t (FlashAttention,
// Dao et al. 2022, Algorithm 1, one key at a time) writes out and the row's
// log-sum-exp lse (B,NH,T) in fp32. Backward (FlashAttention-2, Dao 2023,
// Algorithm 2, without atomics): a warp per query row computes
// D = dout . out into `rowdot` (B,NH,T floats, the caller's scratch), then
// a warp per query row sums dq and a warp per key row (b, kv head, t2) sums
// dk and dv over the group's heads and the rows t >= t2 in a fixed order,
// each recomputing the probabilities from lse: deterministic, each gradient
// added to its output once. These warp-per-row kernels run the dot products
// on the CUDA cores; bf16 heads of a multiple of 16 up to 128 elements go to
// the tiled tensor-core kernels instead (flash_attention_tc_cuda.h,
// FlashAttention-2's tiles through WMMA), with the same inputs, outputs and
// scratch. Heads as in attention_cuda.h; hs at most 256.
#pragma once

#include "kernels/attention_cuda.h"

namespace zp::cuda {

constexpr int kFlashMaxHeadDim = 256;

template <class T>
void flash_attention_forward(Heads<T> out, float* lse, Heads<const T> q, Heads<const T> k, Heads<const T> v, int B, int Tn,
                             int NH, int KVH, int hs);
// Writes dq, dk, dv (every row of their heads); rowdot: B*NH*T floats of scratch.
template <class T>
void flash_attention_backward(Heads<T> dq, Heads<T> dk, Heads<T> dv, float* rowdot, Heads<const T> dout, Heads<const T> q,
                              Heads<const T> k, Heads<const T> v, Heads<const T> out, const float* lse, int B, int Tn,
                              int NH, int KVH, int hs);

}  // namespace zp::cuda
