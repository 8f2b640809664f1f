// CudaBackend<T>: the Backend (executor/backend.h) of a CudaDevice: the
// kernels of kernels/ (norms, activations, attention through cuBLASLt's
// batched products with the softmax between them, or with
// ZP_CUDA_ATTENTION=rows the row kernels, rotary positions, token lookups, the fused cross-entropy, AdamW,
// elementwise sums) and cuBLASLt products, for float or bf16 storage with
// fp32 arithmetic, all on the legacy default stream. What it holds, from the
// rank's tracker: the cuBLASLt workspace (backend_scratch, 32 MiB: NVIDIA's
// recommendation for Hopper; the cost model's kZeroplanCudaMatmulWorkspaceBytes), the fp32 score gradients of attention's
// backward, one sequence at a time, and the index arrays of the token
// lookups (backend_scratch; the indices, a few int32 per token, have no row),
// and the per-token losses (logits: the zeroplan rows' loss [T]). Token
// ids and targets may be host or device memory; the lookups' row indices
// are built on the host (ids are a few KB a step) and copied over. The loss
// is summed on the host from the per-token losses, which makes
// cross_entropy a synchronisation point, once per micro-batch.
// Vocabulary-parallel cross-entropy (tensor parallelism) runs on host
// copies of the logits: correct, not fast; the emulated tensor-parallel
// runs it serves say so.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "executor/backend.h"
#include "executor/tagged_buffer.h"
#include "kernels/attention_cuda.h"

namespace zp {

namespace cuda {
class Matmul;
}

// The kernels' name for a scalar of the executor: bf16 goes as its bits.
template <class T>
using kernel_t = std::conditional_t<std::is_same_v<T, bf16>, cuda::Bf16, float>;

template <class T>
class CudaBackend final : public Backend<T> {
 public:
  using Acc = acc_t<T>;
  static constexpr uint64_t kMatmulWorkspaceBytes = uint64_t{32} << 20;
  CudaBackend(Device& device, TrackingAllocator* tracker);
  ~CudaBackend() override;

  void layernorm_forward(T* out, Acc* mean, Acc* rstd, const T* inp, const T* w, const T* b, int N, int C) override;
  void layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const Acc* mean,
                          const Acc* rstd, int N, int C) override;
  void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC) override;
  void matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int C, int OC,
                       bool overwrite_dinp = false) override;
  void attention_forward(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH) override;
  void attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int Tn, int C, int NH) override;
  void gelu_forward(T* out, const T* inp, size_t n) override;
  void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) override;
  void residual_forward(T* out, const T* a, const T* b, size_t n) override;
  void accumulate(T* dst, const T* src, size_t n) override;
  Acc cross_entropy(T* logits, const int* targets, int N, int V) override;
  Acc vocab_parallel_cross_entropy(Communicator* comm, T* logits, const int* targets, size_t N, int vocab_local,
                                   int vocab_start) override;
  void embedding_forward(T* out, const T* table, const int* ids, size_t N, int C, int vocab_start,
                         int vocab_local) override;
  void embedding_backward(T* dtable, const T* dout, const int* ids, size_t N, int C, int vocab_start,
                          int vocab_local) override;
  void add_bias(T* out, const T* bias, size_t rows, int C) override;
  void add_positions(T* out, const T* positions, size_t rows, int C, size_t first, int Tn) override;
  void positions_backward(T* dpositions, const T* dout, size_t N, int C, int Tn) override;
  void rmsnorm_forward(T* out, Acc* rstd, const T* inp, const T* w, int N, int C) override;
  void rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const Acc* rstd, int N, int C) override;
  void swiglu_forward(T* out, const T* gate, const T* up, size_t n) override;
  void swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) override;
  void rope_forward(T* x, int B, int Tn, int H, int hs, Acc base) override;
  void rope_backward(T* dx, int B, int Tn, int H, int hs, Acc base) override;
  void gqa_attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int Tn, int NH, int KVH,
                             int hs) override;
  void gqa_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v, const T* att, int B,
                              int Tn, int NH, int KVH, int hs) override;
  void flash_attention_forward(HeadView<T> out, Acc* lse, HeadView<const T> q, HeadView<const T> k, HeadView<const T> v,
                               int B, int Tn, int NH, int KVH, int hs) override;
  void flash_attention_backward(HeadView<T> dq, HeadView<T> dk, HeadView<T> dv, HeadView<const T> dout,
                                HeadView<const T> q, HeadView<const T> k, HeadView<const T> v, HeadView<const T> out,
                                const Acc* lse, int B, int Tn, int NH, int KVH, int hs) override;
  void adamw_fp32_grads(float* weights, T* low, const float* grads, float scale, float* m, float* v, size_t count,
                        int step, const AdamConfig& a) override;
  void adamw_model_grads(float* weights, T* low, const T* grads, float scale, float* m, float* v, size_t count,
                         int step, const AdamConfig& a) override;
  void add_into_fp32(float* dst, const T* src, size_t n, bool add) override;
  void add_into(T* dst, const T* src, size_t n, bool add) override;
  void round_into(T* dst, const float* src, size_t n) override;
  void widen_into(float* dst, const T* src, size_t n) override;

 private:
  // Device copies of host-built index arrays, one slot per argument of a call.
  const int* indices(int slot, const std::vector<int>& host);
  std::vector<int> host_ids(const int* ids, size_t N);
  float* scores(size_t n);  // the fp32 score (gradient) scratch, grown to n; flash attention's row dots
  // Attention over strided heads, on the path chosen at construction.
  using kernel_type = kernel_t<T>;
  static bool attention_through_gemm();
  void gqa_attention_forward_strided(cuda::Heads<kernel_type> out, T* att, cuda::Heads<const kernel_type> q,
                                     cuda::Heads<const kernel_type> k, cuda::Heads<const kernel_type> v, int B, int Tn, int NH,
                                     int KVH, int hs);
  void gqa_attention_backward_strided(cuda::Heads<kernel_type> dq, cuda::Heads<kernel_type> dk, cuda::Heads<kernel_type> dv,
                                      cuda::Heads<const kernel_type> dout, cuda::Heads<const kernel_type> q,
                                      cuda::Heads<const kernel_type> k, cuda::Heads<const kernel_type> v, const T* att, int B,
                                      int Tn, int NH, int KVH, int hs);
  TrackingAllocator* tracker_;
  Buffer<char> matmul_workspace_;
  std::unique_ptr<cuda::Matmul> matmul_;
  bool gemm_attention_;
  Buffer<float> scores_, losses_;
  Buffer<T> scores_low_;  // the cuBLASLt path's bf16 score gradients
  Buffer<int> zero_rows_;  // add_bias's row index of every row
  std::vector<Buffer<int>> indices_;
};

}  // namespace zp
