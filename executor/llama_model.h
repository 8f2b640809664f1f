// A Llama-style decoder (RMSNorm, SwiGLU, rotary positions, grouped-query
// attention, no biases, untied output layer) with a hand-written backward on
// the CPU reference kernels (ops_cpu.h, ops_llama_cpu.h). Parameters and
// gradients are flat arrays; the count equals the cost model's
// count_params() for the same shape (tested). Templated on the scalar.
// Single rank; optional full recompute.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "executor/activation_sets.h"
#include "executor/backend.h"
#include "executor/param_units.h"
#include "executor/pipeline_stage.h"
#include "executor/unit_table.h"
#include "executor/tagged_buffer.h"
#include "executor/sequence_parallel.h"
#include "executor/tensor_parallel.h"
#include "models/model_spec.h"

namespace zp {

struct LlamaConfig {
  int vocab = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, channels = 0, ffn = 0;
  double rope_base = 10000.0;
};

// Throws InputError unless m is Llama-shaped (RMSNorm, SwiGLU, rotary, untied, no biases, dense).
LlamaConfig llama_config(const ModelSpec& m);

template <class T>
class LlamaModel {
 public:
  using Scalar = T;
  // Buffers come from `tracker` under the cost model's component tags
  // (untracked without one).
  // With a tensor-parallel group: Megatron-style, as GptModel (heads and KV
  // heads, the FFN and the vocabulary split over its ranks).
  LlamaModel(const LlamaConfig& c, uint64_t seed, TrackingAllocator* tracker = nullptr, PipelineStage stage = {},
             TensorParallel tp = {});
  // Fills grads (zeroed first unless `accumulate`).
  acc_t<T> forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate = false);
  acc_t<T> loss(const int* tokens, const int* targets, int B, int Tn);
  // Full activation recompute: keep each layer's input only and rebuild the
  // layer's activations during backward (same arithmetic, same gradients).
  void set_recompute(bool on) { recompute_ = on; }
  // Selective recompute (Korthikanti et al. 2022 Sec. 5): drop each layer's
  // softmax output and rebuild it from the saved q, k in backward, one layer
  // at a time (full recompute, when on, takes precedence).
  void set_selective_recompute(bool on) { selective_ = on; }
  // Flash-style attention, as GptModel::set_flash_attention.
  void set_flash_attention(bool on) { flash_ = on; }
  // Bytes of the saved activations after the last forward.
  size_t activation_bytes() const;
  Buffer<T> params, grads;
  // Parameters and gradients are laid out unit by unit: 0 the embedding,
  // 1..L the layers, L+1 the final norm and the output layer. A pipeline
  // stage holds some of them; unit_size() is 0 for the others.
  int num_units() const { return c_.layers + 2; }
  size_t unit_offset(int unit) const { return table_.offset[static_cast<size_t>(unit)]; }
  size_t unit_size(int unit) const { return table_.size[static_cast<size_t>(unit)]; }
  const LlamaConfig& config() const { return c_; }
  const PipelineStage& stage() const { return stage_; }
  // What its arithmetic runs on (the trainer runs the optimizer there too).
  Backend<T>& backend() { return *be_; }
  // Pipeline parallelism, as GptModel's (executor/gpt_model.h): micro-batch
  // k's forward through this stage from tokens (first stage) or `input`;
  // its output until output_sent(k); its backward from `doutput` (null on
  // the last stage), after which input_gradient() goes back.
  acc_t<T> stage_forward(int k, const int* tokens, const int* targets, const T* input, int B, int Tn);
  const T* stage_output(int k) const;
  void output_sent(int k) { acts_.free_output(k); }
  void stage_backward(int k, const T* doutput, int B, int Tn);
  const T* input_gradient() const { return dinput_->data(); }
  // Elements a stage sends on (and its input gradient sends back) per
  // micro-batch of B x Tn tokens: this rank's token rows under sequence parallelism.
  size_t stage_io_elements(int B, int Tn) const {
    return split_.local(static_cast<size_t>(B) * static_cast<size_t>(Tn)) * static_cast<size_t>(c_.channels);
  }
  void free_activations(int k) { acts_.free(k); }
  // Another chunk of this rank's stage (interleaved pipelines) lends its
  // recompute workspace and scratch, its input-gradient buffer and its
  // backend (one cuBLASLt workspace): the chunks run one at a time, and the
  // cost model counts one of each a rank.
  void share_scratch_with(const LlamaModel& other) {
    acts_.share_scratch(other.acts_);
    dinput_ = other.dinput_;
    be_ = other.be_;
  }
  // Untied embeddings: nothing for the end stages to exchange.
  int tied_embedding_unit() const { return -1; }
  size_t tied_embedding_size() const { return 0; }
  // From now on take parameters and gradient buffers from `units` (ZeRO-3).
  void set_unit_provider(UnitProvider<T>* units) { table_.provider = units; }

 private:
  enum LayerTensor { ATTN_NORM, WQ, WK, WV, WO, MLP_NORM, WGATE, WUP, WDOWN, kLayerTensors };
  std::array<size_t, kLayerTensors + 1> layer_off_{};
  UnitTable<T> table_;
  // The parameters of `unit`; `next` (when >= 0) is the unit needed after it.
  void acquire(int unit, int next = -1) { table_.acquire(unit, next, params.data()); }
  void release(int unit) { table_.release(unit); }
  void open_gradients(int unit) { table_.open_gradients(unit, grads.data()); }
  void finish_gradients(int unit) { table_.finish_gradients(unit); }
  const T* w(LayerTensor t, int l) const { return table_.p[static_cast<size_t>(l) + 1] + layer_off_[t]; }
  T* gw(LayerTensor t, int l) { return table_.g[static_cast<size_t>(l) + 1] + layer_off_[t]; }
  LlamaConfig c_;
  // Saved for backward, as the cost model's rows; the RMSNorm statistics on
  // top; the cross-entropy writes the logits' gradient over the logits.
  struct Acts {
    Buffer<T> x0, xn1, q, k, v, att, atty, x2, xn2, gate, up, h, x3, final_in, xf, logits;
    Buffer<acc_t<T>> rstd1, rstd2, rstdf;  // fp32 under bf16
    Buffer<acc_t<T>> lse;                  // flash attention: the rows' log-sum-exp (B,NH,T) in place of att
    Buffer<T> out;  // a non-last stage's output, until sent
    Buffer<int> ids;
    Buffer<T> partial, gathered, reduced;  // workspace: row-parallel partial sums; sequence parallelism's moves
  };
  // One set per micro-batch in flight (a_); under recompute the layer's own
  // tensors (L_) and the softmax output (A_, also under selective recompute)
  // are one set shared by all micro-batches, rebuilt in backward.
  ActivationSets<Acts> acts_;
  Acts* a_ = nullptr;
  Acts* L_ = nullptr;
  Acts* A_ = nullptr;
  // The stage input's gradient after backward, until sent; an interleaved
  // stage's chunks share one (each backward's is sent before the next runs).
  std::shared_ptr<Buffer<T>> dinput_ = std::make_shared<Buffer<T>>();
  PipelineStage stage_;
  // Tensor parallelism: this rank's heads, KV heads, FFN width and vocabulary rows.
  Communicator* tp_ = nullptr;
  TokenSplit<T> split_;
  // vocab_rows_: the rows held (ceil(V / t), tensor_parallel.h's VocabShard), vocab_local_ the real ones.
  int heads_local_ = 0, kv_local_ = 0, ffn_local_ = 0, vocab_rows_ = 0, vocab_local_ = 0, vocab_start_ = 0;
  void select(int k);
  TrackingAllocator* tracker_ = nullptr;
  std::shared_ptr<Backend<T>> be_;  // shared by an interleaved stage's chunks (share_scratch_with)
  bool recompute_ = false, selective_ = false, flash_ = false;
  // Whether backward rebuilds the softmax output (selective recompute of materialised attention).
  bool recompute_scores() const { return selective_ && !recompute_ && !flash_; }
  // The softmax output's slot: one shared slot under either recompute.
  size_t att_slot(size_t slot) const { return recompute_ || selective_ ? 0 : slot; }
  // Global layer l's forward from its input x, activations into slot
  // `slot`, output into x3 at the stage-local index `local`.
  // `rebuild`: full recompute in backward, which needs the layer's tensors
  // but not its output (the next layer's saved input, or the stage's output,
  // already sent): its last residual add is skipped, and with it a second
  // stage-output buffer over the backward (the products all run, as the
  // time model's recompute counts them).
  void layer_forward(int l, int local, int slot, const T* x, int B, int Tn, bool rebuild = false);
};

}  // namespace zp
