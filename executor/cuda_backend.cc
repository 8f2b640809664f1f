#include "executor/cuda_backend.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <numeric>
#include <string>
#include <stdexcept>
#include <type_traits>

#include "costmodel/memory_options.h"
#include "executor/row_groups.h"
#include "executor/tensor_parallel.h"
#include "kernels/attention_cuda.h"
#include "kernels/attention_gemm_cuda.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise_cuda.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/matmul_cublaslt.h"
#include "kernels/ops_cuda.h"
#include "kernels/token_ops_cuda.h"

namespace zp {
namespace {

static_assert(sizeof(bf16) == sizeof(cuda::Bf16), "bf16 is 16 bits on both sides");
static_assert(kCudaFlashMaxHeadDim == cuda::kFlashMaxHeadDim, "the executor refuses what the flash kernels cannot run");
static_assert(CudaBackend<float>::kMatmulWorkspaceBytes == kZeroplanCudaMatmulWorkspaceBytes,
              "the cost model's backend_scratch row is this workspace");

template <class T>
kernel_t<T>* K(T* p) {
  return reinterpret_cast<kernel_t<T>*>(p);
}
template <class T>
const kernel_t<T>* K(const T* p) {
  return reinterpret_cast<const kernel_t<T>*>(p);
}
template <class T>
cuda::Heads<kernel_t<T>> heads(T* base, size_t stride) {
  return {K(base), stride};
}
template <class T>
cuda::Heads<const kernel_t<T>> heads(const T* base, size_t stride) {
  return {K(base), stride};
}
template <class T>
auto heads(HeadView<T> h) {
  return heads(h.base, h.stride);
}

}  // namespace

template <class T>
CudaBackend<T>::CudaBackend(Device& device, TrackingAllocator* tracker)
    : Backend<T>(device),
      tracker_(tracker),
      matmul_workspace_(make_buffer<char>(tracker, Component::BackendScratch, kMatmulWorkspaceBytes)),
      matmul_(std::make_unique<cuda::Matmul>(matmul_workspace_.data(), kMatmulWorkspaceBytes)),
      gemm_attention_(attention_through_gemm()),
      scores_(make_buffer<float>(tracker, Component::BackendScratch)),
      losses_(make_buffer<float>(tracker, Component::Logits)),  // the zeroplan rows' "loss [T]"
      scores_low_(make_buffer<T>(tracker, Component::BackendScratch)),
      zero_rows_(make_buffer<int>(tracker, Component::BackendScratch)) {
  if (!device.is_gpu()) throw std::runtime_error("CudaBackend needs a GPU device");
}

template <class T>
CudaBackend<T>::~CudaBackend() = default;

template <class T>
const int* CudaBackend<T>::indices(int slot, const std::vector<int>& host) {
  while (indices_.size() <= static_cast<size_t>(slot)) {
    indices_.push_back(make_buffer<int>(tracker_, Component::BackendScratch));
  }
  Buffer<int>& b = indices_[static_cast<size_t>(slot)];
  if (b.size() < host.size()) b.assign(host.size(), 0);
  copy_in(b, host.data(), host.size());
  return b.data();
}

template <class T>
std::vector<int> CudaBackend<T>::host_ids(const int* ids, size_t N) {
  // Device memory (a model's ids buffer) is copied over, which returns once
  // the host copy is complete; host memory (the caller's targets) is read.
  if (cuda::host_pointer(ids)) return std::vector<int>(ids, ids + N);
  std::vector<int> out(N);
  this->device().copy(out.data(), ids, N * sizeof(int));
  return out;
}

namespace {

// A scratch buffer of at least n elements (the old storage goes before the new comes).
template <class U>
U* grown(Buffer<U>& b, size_t n) {
  if (b.size() < n) {
    release_buffer(b);
    b.assign(n, U(0));
  }
  return b.data();
}

}  // namespace

template <class T>
float* CudaBackend<T>::scores(size_t n) {
  return grown(scores_, n);
}

template <class T>
void CudaBackend<T>::layernorm_forward(T* out, Acc* mean, Acc* rstd, const T* inp, const T* w, const T* b, int N, int C) {
  cuda::layernorm_forward(K(out), mean, rstd, K(inp), K(w), K(b), N, C);
}
// The norms' weight gradients are column sums over the rows, split into
// chunks when they may use scratch: the cuBLASLt workspace, idle between
// products since everything runs on the default stream (cuda_common.cuh).
template <class T>
void CudaBackend<T>::layernorm_backward(T* dinp, T* dw, T* db, const T* dout, const T* inp, const T* w, const Acc* mean,
                                        const Acc* rstd, int N, int C) {
  cuda::layernorm_backward(K(dinp), K(dw), K(db), K(dout), K(inp), K(w), mean, rstd, N, C,
                           cuda::Scratch{matmul_workspace_.data(), kMatmulWorkspaceBytes});
}
template <class T>
void CudaBackend<T>::matmul_forward(T* out, const T* inp, const T* w, const T* bias, int N, int C, int OC) {
  matmul_->forward(K(out), K(inp), K(w), K(bias), N, C, OC);
}
template <class T>
void CudaBackend<T>::matmul_backward(T* dinp, T* dw, T* dbias, const T* dout, const T* inp, const T* w, int N, int C,
                                     int OC, bool overwrite_dinp) {
  matmul_->backward(K(dinp), K(dw), K(dbias), K(dout), K(inp), K(w), N, C, OC, overwrite_dinp);
}
// GPT-2's q, k, v sit side by side in (B,T,3C): three strided views of one
// tensor, through the same grouped-head path with one query head per group.
template <class T>
void CudaBackend<T>::attention_forward(T* out, T* att, const T* qkv, int B, int Tn, int C, int NH) {
  const size_t c = static_cast<size_t>(C);
  const int hs = C / NH;
  gqa_attention_forward_strided(heads(out, c), att, heads(qkv, 3 * c), heads(qkv + c, 3 * c), heads(qkv + 2 * c, 3 * c), B,
                                Tn, NH, NH, hs);
}
template <class T>
void CudaBackend<T>::attention_backward(T* dqkv, const T* dout, const T* qkv, const T* att, int B, int Tn, int C, int NH) {
  const size_t c = static_cast<size_t>(C);
  const int hs = C / NH;
  gqa_attention_backward_strided(heads(dqkv, 3 * c), heads(dqkv + c, 3 * c), heads(dqkv + 2 * c, 3 * c), heads(dout, c),
                                 heads(qkv, 3 * c), heads(qkv + c, 3 * c), heads(qkv + 2 * c, 3 * c), att, B, Tn, NH, NH, hs);
}

// ZP_CUDA_ATTENTION=rows selects the row kernels (every dot product on the
// CUDA cores: slow, kept as the second implementation and a fallback);
// anything else, or nothing, the cuBLASLt path.
template <class T>
bool CudaBackend<T>::attention_through_gemm() {
  const char* choice = std::getenv("ZP_CUDA_ATTENTION");
  return !(choice && std::string(choice) == "rows");
}

// Both paths keep scratch of one sequence and run sequence by sequence:
// fp32 scores or score gradients (NH*T*T floats), and on the cuBLASLt path
// the score gradients again in T for the products that read them (for
// float, the fp32 buffer itself).
template <class T>
void CudaBackend<T>::gqa_attention_forward_strided(cuda::Heads<kernel_type> out, T* att, cuda::Heads<const kernel_type> q,
                                                   cuda::Heads<const kernel_type> k, cuda::Heads<const kernel_type> v, int B,
                                                   int Tn, int NH, int KVH, int hs) {
  if (!gemm_attention_) {
    cuda::attention_forward(out, K(att), q, k, v, B, Tn, NH, KVH, hs);
    return;
  }
  const size_t A = static_cast<size_t>(NH) * Tn * Tn;
  cuda::attention_forward_gemm(*matmul_, out, K(att), q, k, v, scores(A), B, Tn, NH, KVH, hs);
}

template <class T>
void CudaBackend<T>::gqa_attention_backward_strided(cuda::Heads<kernel_type> dq, cuda::Heads<kernel_type> dk,
                                                    cuda::Heads<kernel_type> dv, cuda::Heads<const kernel_type> dout,
                                                    cuda::Heads<const kernel_type> q, cuda::Heads<const kernel_type> k,
                                                    cuda::Heads<const kernel_type> v, const T* att, int B, int Tn, int NH,
                                                    int KVH, int hs) {
  const size_t tokens = static_cast<size_t>(Tn), A = static_cast<size_t>(NH) * tokens * tokens;
  float* ds = scores(A);
  if (gemm_attention_) {
    kernel_type* low = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      low = ds;
    } else {
      low = K(grown(scores_low_, A));
    }
    cuda::attention_backward_gemm(*matmul_, dq, dk, dv, ds, low, dout, q, k, v, K(att), B, Tn, NH, KVH, hs);
    return;
  }
  auto at = [tokens](auto h, size_t b) { return decltype(h){h.base + b * tokens * h.token_stride, h.token_stride}; };
  for (size_t b = 0; b < static_cast<size_t>(B); ++b) {
    cuda::attention_backward(at(dq, b), at(dk, b), at(dv, b), ds, at(dout, b), at(q, b), at(k, b), at(v, b), K(att + b * A), 1,
                             Tn, NH, KVH, hs);
  }
}
// Flash-style attention: its only scratch is backward's row dots
// (B*NH*T floats), in the score buffer the other paths use.
template <class T>
void CudaBackend<T>::flash_attention_forward(HeadView<T> out, Acc* lse, HeadView<const T> q, HeadView<const T> k,
                                             HeadView<const T> v, int B, int Tn, int NH, int KVH, int hs) {
  cuda::flash_attention_forward(heads(out), lse, heads(q), heads(k), heads(v), B, Tn, NH, KVH, hs);
}
template <class T>
void CudaBackend<T>::flash_attention_backward(HeadView<T> dq, HeadView<T> dk, HeadView<T> dv, HeadView<const T> dout,
                                              HeadView<const T> q, HeadView<const T> k, HeadView<const T> v,
                                              HeadView<const T> out, const Acc* lse, int B, int Tn, int NH, int KVH, int hs) {
  float* rowdot = scores(static_cast<size_t>(B) * NH * Tn);
  cuda::flash_attention_backward(heads(dq), heads(dk), heads(dv), rowdot, heads(dout), heads(q), heads(k), heads(v),
                                 heads(out), lse, B, Tn, NH, KVH, hs);
}

template <class T>
void CudaBackend<T>::gelu_forward(T* out, const T* inp, size_t n) {
  cuda::gelu_forward(K(out), K(inp), n);
}
template <class T>
void CudaBackend<T>::gelu_backward(T* dinp, const T* inp, const T* dout, size_t n) {
  cuda::gelu_backward(K(dinp), K(inp), K(dout), n);
}
template <class T>
void CudaBackend<T>::residual_forward(T* out, const T* a, const T* b, size_t n) {
  cuda::add(K(out), K(a), K(b), n);
}
template <class T>
void CudaBackend<T>::accumulate(T* dst, const T* src, size_t n) {
  cuda::add_into(K(dst), K(src), n, true);
}

template <class T>
typename CudaBackend<T>::Acc CudaBackend<T>::cross_entropy(T* logits, const int* targets, int N, int V) {
  const size_t n = static_cast<size_t>(N);
  if (losses_.size() < n) losses_.assign(n, 0.0f);
  const int* t = indices(0, host_ids(targets, n));
  cuda::cross_entropy_forward_backward(K(logits), losses_.data(), K(logits), t, N, V);
  std::vector<float> losses(n);
  this->device().copy(losses.data(), losses_.data(), n * sizeof(float));
  double sum = 0;  // the mean over tokens, summed in double on the host
  for (float l : losses) sum += l;
  return static_cast<Acc>(sum / static_cast<double>(N));
}

template <class T>
typename CudaBackend<T>::Acc CudaBackend<T>::vocab_parallel_cross_entropy(Communicator* comm, T* logits,
                                                                          const int* targets, size_t N, int vocab_local,
                                                                          int vocab_start) {
  // On host copies (see the header): the logits come over in their own
  // precision and are widened, and the gradient rounded, on the host, so the
  // device holds nothing more than the logits it already has (a device-side
  // fp32 copy would be the largest buffer of the step).
  const size_t NV = N * static_cast<size_t>(vocab_local);
  std::vector<T> low(NV);
  this->device().copy(low.data(), logits, NV * sizeof(T));
  std::vector<float> host(low.begin(), low.end());
  const std::vector<int> t = host_ids(targets, N);
  const float loss = zp::vocab_parallel_cross_entropy(comm, host.data(), t.data(), N, vocab_local, vocab_start,
                                                      static_cast<TrackingAllocator*>(nullptr));
  for (size_t i = 0; i < NV; ++i) low[i] = static_cast<T>(host[i]);  // round to nearest even, as on the device
  this->device().copy(logits, low.data(), NV * sizeof(T));
  return loss;
}

template <class T>
void CudaBackend<T>::embedding_forward(T* out, const T* table, const int* ids, size_t N, int C, int vocab_start,
                                       int vocab_local) {
  std::vector<int> rows = host_ids(ids, N);
  for (int& r : rows) r = r - vocab_start >= 0 && r - vocab_start < vocab_local ? r - vocab_start : -1;
  cuda::gather_rows(K(out), K(table), indices(0, rows), N, C);  // rows outside this rank's vocabulary written as zeros
}
template <class T>
void CudaBackend<T>::embedding_backward(T* dtable, const T* dout, const int* ids, size_t N, int C, int vocab_start,
                                        int vocab_local) {
  const std::vector<int> h = host_ids(ids, N);
  const RowGroups g = group_rows(N, [&](size_t i) {
    const long row = h[i] - vocab_start;
    return row >= 0 && row < vocab_local ? row : -1L;
  });
  cuda::scatter_add_rows(K(dtable), K(dout), indices(0, g.order), indices(1, g.start), indices(2, g.row), g.groups(), C);
}
template <class T>
void CudaBackend<T>::add_bias(T* out, const T* bias, size_t rows, int C) {
  // Every row reads row 0: a device buffer of zeros, grown once, no upload.
  if (zero_rows_.size() < rows) zero_rows_.assign(rows, 0);
  cuda::gather_add_rows(K(out), K(bias), zero_rows_.data(), rows, C);
}
template <class T>
void CudaBackend<T>::add_positions(T* out, const T* positions, size_t rows, int C, size_t first, int Tn) {
  std::vector<int> r(rows);
  for (size_t i = 0; i < rows; ++i) r[i] = static_cast<int>((first + i) % static_cast<size_t>(Tn));
  cuda::gather_add_rows(K(out), K(positions), indices(0, r), rows, C);
}
template <class T>
void CudaBackend<T>::positions_backward(T* dpositions, const T* dout, size_t N, int C, int Tn) {
  const RowGroups g = group_rows(N, [Tn](size_t i) { return static_cast<long>(i % static_cast<size_t>(Tn)); });
  cuda::scatter_add_rows(K(dpositions), K(dout), indices(0, g.order), indices(1, g.start), indices(2, g.row), g.groups(),
                         C);
}

template <class T>
void CudaBackend<T>::rmsnorm_forward(T* out, Acc* rstd, const T* inp, const T* w, int N, int C) {
  cuda::rmsnorm_forward(K(out), rstd, K(inp), K(w), N, C);
}
template <class T>
void CudaBackend<T>::rmsnorm_backward(T* dinp, T* dw, const T* dout, const T* inp, const T* w, const Acc* rstd, int N,
                                      int C) {
  cuda::rmsnorm_backward(K(dinp), K(dw), K(dout), K(inp), K(w), rstd, N, C,
                         cuda::Scratch{matmul_workspace_.data(), kMatmulWorkspaceBytes});
}
template <class T>
void CudaBackend<T>::swiglu_forward(T* out, const T* gate, const T* up, size_t n) {
  cuda::swiglu_forward(K(out), K(gate), K(up), n);
}
template <class T>
void CudaBackend<T>::swiglu_backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) {
  cuda::swiglu_backward(K(dgate), K(dup), K(dout), K(gate), K(up), n);
}
template <class T>
void CudaBackend<T>::rope_forward(T* x, int B, int Tn, int H, int hs, Acc base) {
  cuda::rope_forward(K(x), B, Tn, H, hs, static_cast<float>(base));
}
template <class T>
void CudaBackend<T>::rope_backward(T* dx, int B, int Tn, int H, int hs, Acc base) {
  cuda::rope_backward(K(dx), B, Tn, H, hs, static_cast<float>(base));
}
template <class T>
void CudaBackend<T>::gqa_attention_forward(T* out, T* att, const T* q, const T* k, const T* v, int B, int Tn, int NH,
                                           int KVH, int hs) {
  const size_t qs = static_cast<size_t>(NH) * hs, ks = static_cast<size_t>(KVH) * hs;
  gqa_attention_forward_strided(heads(out, qs), att, heads(q, qs), heads(k, ks), heads(v, ks), B, Tn, NH, KVH, hs);
}
template <class T>
void CudaBackend<T>::gqa_attention_backward(T* dq, T* dk, T* dv, const T* dout, const T* q, const T* k, const T* v,
                                            const T* att, int B, int Tn, int NH, int KVH, int hs) {
  const size_t qs = static_cast<size_t>(NH) * hs, ks = static_cast<size_t>(KVH) * hs;
  gqa_attention_backward_strided(heads(dq, qs), heads(dk, ks), heads(dv, ks), heads(dout, qs), heads(q, qs), heads(k, ks),
                                 heads(v, ks), att, B, Tn, NH, KVH, hs);
}

template <class T>
void CudaBackend<T>::adamw_fp32_grads(float* weights, T* low, const float* grads, float scale, float* m, float* v,
                                      size_t count, int step, const AdamConfig& a) {
  cuda::Bf16* l = nullptr;
  if constexpr (std::is_same_v<T, bf16>) l = K(low);
  cuda::adamw_step(weights, l, grads, scale, m, v, count, step, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay);
  if constexpr (!std::is_same_v<T, bf16>) {
    if (low) this->copy(low, weights, count);
  }
}
template <class T>
void CudaBackend<T>::adamw_model_grads(float* weights, T* low, const T* grads, float scale, float* m, float* v,
                                       size_t count, int step, const AdamConfig& a) {
  if constexpr (std::is_same_v<T, bf16>) {
    cuda::adamw_step(weights, K(low), K(grads), scale, m, v, count, step, a.lr, a.beta1, a.beta2, a.eps, a.weight_decay);
  } else {
    adamw_fp32_grads(weights, low, grads, scale, m, v, count, step, a);
  }
}
template <class T>
void CudaBackend<T>::add_into_fp32(float* dst, const T* src, size_t n, bool add) {
  cuda::add_into_fp32(dst, K(src), n, add);
}
template <class T>
void CudaBackend<T>::add_into(T* dst, const T* src, size_t n, bool add) {
  cuda::add_into(K(dst), K(src), n, add);
}
template <class T>
void CudaBackend<T>::round_into(T* dst, const float* src, size_t n) {
  if constexpr (std::is_same_v<T, bf16>) {
    cuda::cast(K(dst), src, n);
  } else {
    this->copy(dst, src, n);
  }
}
template <class T>
void CudaBackend<T>::widen_into(float* dst, const T* src, size_t n) {
  if constexpr (std::is_same_v<T, bf16>) {
    cuda::cast(dst, K(src), n);
  } else {
    this->copy(dst, src, n);
  }
}

template class CudaBackend<float>;
template class CudaBackend<bf16>;

}  // namespace zp
