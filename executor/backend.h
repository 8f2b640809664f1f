// Backend<T>: every operation a model and its trainer run on their buffers,
// for storage type T (float, double, or bf16 with fp32 arithmetic): matrix
// products, norms, attention, activations, residuals, the token-indexed
// lookups and their gradients, the loss, the optimizer step and the
// mixed-precision conversions, plus zeroing and copies. Two implement it:
// CpuBackend (executor/cpu_backend.h: the reference kernels of ops_cpu.h and
// ops_llama_cpu.h) and CudaBackend (executor/cuda_backend.h: the kernels of
// kernels/ and cuBLASLt, built where nvcc is). The models hold one, made
// for the Device their tracker allocates from (make_backend), so the same
// forward, backward and ZeRO code runs on either. Pointers are the
// backend's device memory, except index arrays (token ids, targets), which
// may also be host memory. Accumulating calls (gradients) add to their
// outputs, as the CPU kernels do.
#pragma once

#include <cstddef>
#include <memory>

#include "executor/adamw.h"
#include "executor/communicator.h"
#include "executor/device.h"
#include "executor/head_view.h"
#include "executor/scalar.h"

namespace zp {

class TrackingAllocator;

template <class T>
class Backend {
 public:
  using Acc = acc_t<T>;  // what kernels compute in; also the type of norm statistics and losses
  explicit Backend(Device& device) : device_(device) {}
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;
  Device& device() const { return device_; }

  // Memory, in elements.
  void zero(T* p, size_t n) { device_.zero(p, n * sizeof(T)); }
  void copy(T* dst, const T* src, size_t n) { device_.copy(dst, src, n * sizeof(T)); }

  // GPT-2: out (N,C) = LayerNorm(inp) * w + b; mean, rstd (N).
  virtual void layernorm_forward(T* out, Acc* mean, Acc* rstd, const T* inp, const T* w, const T* b, int N, int C) = 0;
  virtual void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const Acc* mean,
                                  const Acc* rstd, int N, int C) = 0;
  // out (N,OC) = inp (N,C) w(OC,C)^T + bias (OC; may be null).
  virtual void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC) = 0;
  // Adds to dinp (N,C), dw (OC,C) and dbias (OC; may be null); with
  // overwrite_dinp, dinp is written instead, its old values never read (an
  // input gradient with one producer needs no zeroing first).
  virtual void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int C, int OC,
                               bool overwrite_dinp = false) = 0;
  // Causal attention over packed q,k,v (B,T,3C); att (B,NH,T,T), the
  // probabilities backward reads; out (B,T,C). The scores before the softmax
  // and their gradients are the backend's own scratch (backend_scratch), one
  // sequence at a time.
  virtual void attention_forward(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH) = 0;
  // Adds to dqkv.
  virtual void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int Tn, int C, int NH) = 0;
  virtual void gelu_forward(T* out, const T* inp, size_t n) = 0;
  // Writes dinp (its one producer: no zeroing first), as swiglu_backward writes dgate and dup.
  virtual void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) = 0;
  virtual void residual_forward(T* out, const T* a, const T* b, size_t n) = 0;
  // dst += src.
  virtual void accumulate(T* dst, const T* src, size_t n) = 0;

  // Mean cross-entropy of logits (N,V) against targets; the logits' gradient
  // overwrites them (fp32 arithmetic for bf16 logits, as Megatron-LM casts
  // the logits to fp32 for the loss).
  virtual Acc cross_entropy(T* logits, const int* targets, int N, int V) = 0;
  // The same over vocabulary-parallel logits (N, V/t per rank): tensor_parallel.h.
  virtual Acc vocab_parallel_cross_entropy(Communicator* comm, T* logits, const int* targets, size_t N, int vocab_local,
                                           int vocab_start) = 0;

  // Token-indexed rows. out (N,C) row i = table row ids[i] - vocab_start for
  // the ids this rank's rows [vocab_start, vocab_start + vocab_local) hold
  // (the other rows of `out` written as zeros, so `out` needs no fill); its gradient adds row
  // i of dout to dtable's row ids[i] - vocab_start (fp32 sums, one rounding).
  virtual void embedding_forward(T* out, const T* table, const int* ids, size_t N, int C, int vocab_start,
                                 int vocab_local) = 0;
  virtual void embedding_backward(T* dtable, const T* dout, const int* ids, size_t N, int C, int vocab_start,
                                  int vocab_local) = 0;
  // out (rows,C) row i += bias; += positions row (first + i) % Tn; the
  // positions' gradient adds dout row i (N rows) to dpositions row i % Tn.
  virtual void add_bias(T* out, const T* bias, size_t rows, int C) = 0;
  virtual void add_positions(T* out, const T* positions, size_t rows, int C, size_t first, int Tn) = 0;
  virtual void positions_backward(T* dpositions, const T* dout, size_t N, int C, int Tn) = 0;

  // Llama style: RMSNorm, SwiGLU, rotary positions (in place on x
  // (B,T,H,hs)), grouped-query attention (q (B,T,NH,hs), k and v
  // (B,T,KVH,hs), att (B,NH,T,T), out (B,T,NH,hs)).
  virtual void rmsnorm_forward(T* out, Acc* rstd, const T* inp, const T* w, int N, int C) = 0;
  virtual void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const Acc* rstd, int N,
                                int C) = 0;
  virtual void swiglu_forward(T* out, const T* gate, const T* up, size_t n) = 0;
  virtual void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) = 0;
  virtual void rope_forward(T* x, int B, int Tn, int H, int hs, Acc base) = 0;
  virtual void rope_backward(T* dx, int B, int Tn, int H, int hs, Acc base) = 0;
  virtual void gqa_attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int Tn, int NH, int KVH,
                                     int hs) = 0;
  virtual void gqa_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                                      const T* att, int B, int Tn, int NH, int KVH, int hs) = 0;

  // Memory-efficient (flash-style) causal attention, either model's heads
  // (head_view.h): out = causal softmax(q k^T / sqrt(hs)) v (overwritten),
  // query head h reading key/value head h / (NH / KVH); no (T,T) tensor is
  // kept, only lse (B,NH,T), each row's log-sum-exp, which backward reads
  // with the output to recompute the probabilities (executor/ops_flash_cpu.h).
  // Backward writes dq, dk, dv (every row of their heads: no zeroing first).
  virtual void flash_attention_forward(HeadView<T> out, Acc* lse, HeadView<const T> q, HeadView<const T> k,
                                       HeadView<const T> v, int B, int Tn, int NH, int KVH, int hs) = 0;
  virtual void flash_attention_backward(HeadView<T> dq, HeadView<T> dk, HeadView<T> dv, HeadView<const T> dout,
                                        HeadView<const T> q, HeadView<const T> k, HeadView<const T> v,
                                        HeadView<const T> out, const Acc* lse, int B, int Tn, int NH, int KVH, int hs) = 0;

  // The trainer's side. AdamW (adamw.h) on `count` fp32 weights from
  // gradients times `scale`; when `low` is not null the updated weights are
  // also rounded into it (a bf16 model's copy of its fp32 master weights).
  // Gradients in fp32, or in the model's own type.
  virtual void adamw_fp32_grads(float* weights, T* low, const float* grads, float scale, float* m, float* v,
                                size_t count, int step, const AdamConfig& a) = 0;
  virtual void adamw_model_grads(float* weights, T* low, const T* grads, float scale, float* m, float* v,
                                 size_t count, int step, const AdamConfig& a) = 0;
  // dst = (add ? dst : 0) + src, widened to fp32 or in T.
  virtual void add_into_fp32(float* dst, const T* src, size_t n, bool add) = 0;
  virtual void add_into(T* dst, const T* src, size_t n, bool add) = 0;
  // dst = src rounded to T (master weights into the model's copy), and back.
  virtual void round_into(T* dst, const float* src, size_t n) = 0;
  virtual void widen_into(float* dst, const T* src, size_t n) = 0;

 private:
  Device& device_;
};

// The backend of the device `tracker` allocates from (the host's without a
// tracker); the CUDA backend registers itself for GPU devices
// (executor/cuda_backend.h). double runs on the host only.
template <class T>
std::unique_ptr<Backend<T>> make_backend(TrackingAllocator* tracker);

}  // namespace zp
