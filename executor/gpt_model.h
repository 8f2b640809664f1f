// A GPT-2 style decoder (LayerNorm, GELU, learned positions, tied embeddings,
// biases) with a hand-written backward, on the CPU reference kernels
// (ops_cpu.h): the first model of the executor (issue 6). Parameters and
// gradients are flat arrays laid out unit by unit (the embedding: wte, wpe;
// each layer: ln1, qkv, attention projection, ln2, fc, fc projection, weights
// before biases; the final norm), so that ZeRO-3 can gather one unit at a
// time; the count equals the cost model's count_params() for the same shape
// (tested). A model can be one pipeline stage (its layers, the embedding on
// the first stage, the final norm and the tied output layer's copy on the
// last) and keep several micro-batches' activations in flight. Templated on
// the scalar: double for finite-difference tests, float for training.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "executor/communicator.h"
#include "executor/backend.h"
#include "executor/activation_sets.h"
#include "executor/param_units.h"
#include "executor/pipeline_stage.h"
#include "executor/unit_table.h"
#include "executor/tagged_buffer.h"
#include "executor/sequence_parallel.h"
#include "executor/tensor_parallel.h"
#include "models/model_spec.h"

namespace zp {

struct GptConfig {
  int vocab = 0, max_seq = 0, layers = 0, heads = 0, channels = 0;
};



// The GPT shape of a ModelSpec (GELU, LayerNorm, learned positions, tied).
// Throws InputError for other architectures.
GptConfig gpt_config(const ModelSpec& m);

template <class T>
class GptModel {
 public:
  using Scalar = T;
  // Buffers come from `tracker` under the cost model's component tags
  // (untracked without one).
  GptModel(const GptConfig& c, uint64_t seed, TrackingAllocator* tracker = nullptr, PipelineStage stage = {},
           TensorParallel tp = {});

  // Loss of next-token prediction over tokens (B,T) -> targets (B,T); fills
  // grads (zeroed first unless `accumulate`, which adds to them: gradient
  // accumulation over micro-batches). T <= max_seq.
  acc_t<T> forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate = false);
  // Forward only (for finite differences).
  acc_t<T> loss(const int* tokens, const int* targets, int B, int Tn);

  Buffer<T> params, grads;
  const GptConfig& config() const { return c_; }
  // Units: 0 the embedding, 1..L the layers, L+1 the final norm, L+2 the
  // last stage's copy of the tied output layer (pipelines only). A stage
  // holds some of them; unit_size() is 0 for the others.
  int num_units() const { return c_.layers + 3; }
  size_t unit_offset(int unit) const { return table_.offset[static_cast<size_t>(unit)]; }
  size_t unit_size(int unit) const { return table_.size[static_cast<size_t>(unit)]; }

  // Pipeline parallelism. Micro-batch k's forward through this stage, from
  // tokens on the first stage and from `input` (the previous stage's output,
  // B*T*C) on the others; returns the loss on the last stage (0 elsewhere).
  acc_t<T> stage_forward(int k, const int* tokens, const int* targets, const T* input, int B, int Tn);
  // The stage's output for micro-batch k (not on the last stage), until
  // output_sent(k) frees it.
  const T* stage_output(int k) const;
  void output_sent(int k) { acts_.free_output(k); }
  // Micro-batch k's backward from `doutput` (the next stage's input gradient;
  // null on the last stage), adding to the gradients; then input_gradient()
  // holds what goes back to the previous stage (not on the first).
  void stage_backward(int k, const T* doutput, int B, int Tn);
  const T* input_gradient() const { return dinput_->data(); }
  // Elements a stage sends on (and its input gradient sends back) per
  // micro-batch of B x Tn tokens: this rank's token rows under sequence parallelism.
  size_t stage_io_elements(int B, int Tn) const {
    return split_.local(static_cast<size_t>(B) * static_cast<size_t>(Tn)) * static_cast<size_t>(c_.channels);
  }
  // Frees micro-batch k's activations (a pipeline keeps only those in flight).
  void free_activations(int k) { acts_.free(k); }
  // Another chunk of this rank's stage (interleaved pipelines) lends its
  // recompute workspace and scratch, its input-gradient buffer and its
  // backend (one cuBLASLt workspace): the chunks run one at a time, and the
  // cost model counts one of each a rank.
  void share_scratch_with(const GptModel& other) {
    acts_.share_scratch(other.acts_);
    dinput_ = other.dinput_;
    be_ = other.be_;
  }
  // The unit holding the tied embedding on this stage of a pipeline (the
  // first stage's unit 0, whose first tied_embedding_size() elements are the
  // lookup table; the last stage's output-layer copy, unit L+2), whose
  // gradients the two stages sum every step (Megatron-LM's embedding group);
  // -1 on other stages and without a pipeline. tied_embedding_size(): this
  // tensor-parallel rank's vocabulary rows.
  int tied_embedding_unit() const;
  size_t tied_embedding_size() const { return static_cast<size_t>(vocab_rows_) * c_.channels; }
  const PipelineStage& stage() const { return stage_; }
  // What its arithmetic runs on (the trainer runs the optimizer there too).
  Backend<T>& backend() { return *be_; }
  // From now on take parameters and gradient buffers from `units` (ZeRO-3);
  // params and grads may then be released.
  void set_unit_provider(UnitProvider<T>* units) { table_.provider = units; }
  // Full activation recompute: keep each layer's input only and rebuild the
  // layer's activations during backward (same arithmetic, same gradients).
  void set_recompute(bool on) { recompute_ = on; }
  // Selective recompute (Korthikanti et al. 2022 Sec. 5): drop each layer's
  // softmax output and rebuild it from the saved q, k in backward, one layer
  // at a time (full recompute, when on, takes precedence).
  void set_selective_recompute(bool on) { selective_ = on; }
  // Flash-style attention (Backend::flash_attention_*): each layer keeps its
  // rows' log-sum-exp instead of the softmax output, backward recomputes
  // the probabilities, and selective recompute has nothing left to drop.
  void set_flash_attention(bool on) { flash_ = on; }
  // Bytes of the saved activations after the last forward (the buffers
  // tagged activations, recompute workspace and logits).
  size_t activation_bytes() const;

 private:
  // The tensors of one layer unit, in order, and their offsets in the unit.
  enum LayerTensor { LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, kLayerTensors };
  std::array<size_t, kLayerTensors + 1> layer_off_{};
  UnitTable<T> table_;
  PipelineStage stage_;
  GptConfig c_;
  // Activations of the last forward (sized for B*T), laid out as the cost
  // model's rows (costmodel/activations.h, zeroplan accounting): per layer its
  // input (encoded / residual3 of the layer before), the normalised inputs,
  // q/k/v, the softmax output, the attention output, the MLP's inputs and
  // the LayerNorm statistics (2 floats per token per norm; fp32 under bf16);
  // the final norm's input and the logits. The two projections' outputs
  // share one operator temporary (workspace: each is added to the residual
  // stream before the next is computed); the scores before the softmax are
  // the backend's scratch. The cross-entropy writes the logits' gradient
  // over the logits.
  struct Acts {
    Buffer<T> encoded, ln1, qkv, atty, att, residual2, ln2, fch, fch_gelu, residual3, final_in, lnf, logits;
    Buffer<acc_t<T>> ln1_mean, ln1_rstd, ln2_mean, ln2_rstd, lnf_mean, lnf_rstd;  // fp32 under bf16
    Buffer<acc_t<T>> lse;  // flash attention: the rows' log-sum-exp (B,NH,T) in place of att
    Buffer<T> proj;                     // workspace: the attention and MLP output projections' partial outputs
    Buffer<T> gathered, reduced;        // sequence parallelism: all ranks' token rows, this rank's sums
    Buffer<T> out;                      // a non-last stage's output, until sent
    Buffer<int> ids;
  };
  // One set of activations per micro-batch in flight; a_ is the one in use.
  // A layer's own activations live there too, except under recompute, when
  // one set (the recompute workspace) is shared by all micro-batches and
  // rebuilt in backward (L_ for the layer's tensors, A_ for the softmax
  // output, which selective recompute also shares); operator temporaries are
  // always shared.
  ActivationSets<Acts> acts_;
  Acts* a_ = nullptr;
  Acts* L_ = nullptr;
  Acts* A_ = nullptr;
  // The stage input's gradient after backward, until sent; an interleaved
  // stage's chunks share one (each backward's is sent before the next runs).
  std::shared_ptr<Buffer<T>> dinput_ = std::make_shared<Buffer<T>>();
  void select(int k);
  TrackingAllocator* tracker_ = nullptr;
  std::shared_ptr<Backend<T>> be_;  // shared by an interleaved stage's chunks (share_scratch_with)
  bool recompute_ = false, selective_ = false, flash_ = false;
  // Whether backward rebuilds the softmax output from the saved q, k
  // (selective recompute of materialised attention).
  bool recompute_scores() const { return selective_ && !recompute_ && !flash_; }
  // The softmax output's slot: one shared slot under either recompute.
  size_t att_slot(size_t slot) const { return recompute_ || selective_ ? 0 : slot; }
  // Global layer l's forward from `residual`, activations into slot `slot`,
  // output into residual3 at the stage-local index `local`.
  // `rebuild`: full recompute in backward, which needs the layer's tensors
  // but not its output (the next layer's saved input, or the stage's output,
  // already sent): its last residual add is skipped, and with it a second
  // stage-output buffer over the backward (the products all run, as the
  // time model's recompute counts them).
  void layer_forward(int l, int local, int slot, const T* residual, int B, int Tn, bool rebuild = false);
  int head_unit() const { return stage_.first ? 0 : c_.layers + 2; }
  // The parameters of `unit`; `next` (when >= 0) is the unit needed after it.
  void acquire(int unit, int next = -1) { table_.acquire(unit, next, params.data()); }
  void release(int unit) { table_.release(unit); }
  void open_gradients(int unit) { table_.open_gradients(unit, grads.data()); }
  void finish_gradients(int unit) { table_.finish_gradients(unit); }
  const T* w(LayerTensor t, int l) const { return table_.p[static_cast<size_t>(l) + 1] + layer_off_[t]; }
  T* gw(LayerTensor t, int l) { return table_.g[static_cast<size_t>(l) + 1] + layer_off_[t]; }
  size_t wpe_offset() const { return static_cast<size_t>(vocab_rows_) * c_.channels; }
  // Tensor parallelism: this rank's share of the attention channels, heads,
  // FFN and vocabulary, and where its vocabulary rows start.
  Communicator* tp_ = nullptr;
  int tp_size_ = 1, tp_rank_ = 0;
  // vocab_rows_: the rows held (ceil(V / t), tensor_parallel.h's VocabShard), vocab_local_ the real ones.
  int channels_local_ = 0, heads_local_ = 0, ffn_local_ = 0, vocab_rows_ = 0, vocab_local_ = 0, vocab_start_ = 0;
  // A row-parallel product's partial sums over all tokens: summed over the
  // ranks (this rank's `rows` token rows of them under sequence parallelism),
  // then the bias; returns where the result is.
  T* add_bias_after_reduce(T* partial, const T* bias, size_t rows, int C);
  TokenSplit<T> split_;
};

}  // namespace zp
