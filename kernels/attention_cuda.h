// CUDA kernels of attention (issue 7): rotary positions and causal attention
// with grouped key/value heads, the device counterparts of ops_llama_cpu.h's
// rope_* and gqa_attention_* (and, through the strides, of ops_cpu.h's GPT-2
// attention, whose q, k and v sit side by side in one (B,T,3C) tensor).
// Every pointer is device memory; T is float or Bf16 (fp32 arithmetic, one
// rounding per stored value). The softmax is fused into the score kernel,
// which writes the probabilities (B,NH,T,T) that backward reads, as the CPU
// kernels keep them; the cost model's zeroplan accounting counts that tensor
// (a flash-style kernel that never holds it is the next step, and the
// accounting must follow it). Backward adds to dq, dk, dv, is deterministic
// (no atomics: key/value gradients are summed by the thread that owns them)
// and needs an fp32 workspace of (B,NH,T,T) for the score gradients.
#pragma once

#include <cstddef>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

// Where the heads of one tensor are: element (b, t, head, i) is at
// base[(b * T + t) * token_stride + head * hs + i].
template <class T>
struct Heads {
  T* base;
  size_t token_stride;
};

// Rotary positions in place on x (B,T,H,hs): pairs (i, i + hs/2) rotate by
// t * base^(-2i/hs); backward applies the inverse rotation to dx in place.
template <class T>
void rope_forward(T* x, int B, int Tn, int H, int hs, float base);
template <class T>
void rope_backward(T* dx, int B, int Tn, int H, int hs, float base);

// att (B,NH,T,T) = causal softmax(q k^T / sqrt(hs)), zero above the diagonal;
// out (B,T,NH,hs) = att v. Query head h reads key/value head h / (NH / KVH).
template <class T>
void attention_forward(Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v, int B, int Tn, int NH,
                       int KVH, int hs);
template <class T>
void attention_backward(Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dscores, Heads<const T> dout, Heads<const T> q,
                        Heads<const T> k, Heads<const T> v, const T* att, int B, int Tn, int NH, int KVH, int hs);

}  // namespace zp::cuda
