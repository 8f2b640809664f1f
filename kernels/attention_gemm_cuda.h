// Causal attention through cuBLASLt (issue 7's throughput target): the
// score and value products as strided batches of bf16 (or fp32) products
// with fp32 accumulation on the tensor cores, and the softmax and its
// gradient as row kernels between them, one sequence at a time (the way
// PyTorch's math attention and llm.c's cuBLAS attention compute it). The
// formulas and layouts are those of kernels/attention_cuda.h (the row
// kernels, which compute every dot product on the CUDA cores): q, k, v and
// their gradients addressed by Heads strides, so GPT-2's interleaved (B,T,3C)
// q,k,v and grouped KV heads both work; att (B,NH,T,T) the probabilities
// backward reads. The products run over all T x T positions and the masked
// ones become zero in the softmax (twice the causal FLOPs, none of a
// flash kernel's tiling). Scratch, one sequence's worth: fp32 scores
// (forward) and score gradients (backward), NH*T*T floats, and the score
// gradients in T for the products that read them (NH*T*T of T; for float
// it may be the same memory as the fp32 one). Which products, with which
// transposes and strides: kernels/attention_gemm_plan.h, checked on the host
// by tests/cublaslt_plan_test.cc.
#pragma once

#include "kernels/attention_cuda.h"
#include "kernels/matmul_cublaslt.h"

namespace zp::cuda {

// att = causal softmax(q k^T / sqrt(hs)); out = att v (overwritten).
template <class T>
void attention_forward_gemm(Matmul& mm, Heads<T> out, T* att, Heads<const T> q, Heads<const T> k, Heads<const T> v,
                            float* scores, int B, int Tn, int NH, int KVH, int hs);
// Adds to dq, dk, dv.
template <class T>
void attention_backward_gemm(Matmul& mm, Heads<T> dq, Heads<T> dk, Heads<T> dv, float* dprobs, T* dscores,
                             Heads<const T> dout, Heads<const T> q, Heads<const T> k, Heads<const T> v, const T* att,
                             int B, int Tn, int NH, int KVH, int hs);

}  // namespace zp::cuda
