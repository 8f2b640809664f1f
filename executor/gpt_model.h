// A GPT-2 style decoder (LayerNorm, GELU, learned positions, tied embeddings,
// biases) with a hand-written backward, on the CPU reference kernels
// (ops_cpu.h): the first model of the executor (issue 6). Parameters and
// gradients are flat arrays in llm.c's order; the count equals the cost
// model's count_params() for the same shape (tested). Templated on the
// scalar: double for finite-difference tests, float for training. Single
// rank; the parallel strategies come next.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

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
  GptModel(const GptConfig& c, uint64_t seed);

  // Loss of next-token prediction over tokens (B,T) -> targets (B,T); fills
  // grads (zeroed first). T <= max_seq.
  T forward_backward(const int* tokens, const int* targets, int B, int Tn);
  // Forward only (for finite differences).
  T loss(const int* tokens, const int* targets, int B, int Tn);

  std::vector<T> params, grads;
  const GptConfig& config() const { return c_; }
  // Full activation recompute: keep each layer's input only and rebuild the
  // layer's activations during backward (same arithmetic, same gradients).
  void set_recompute(bool on) { recompute_ = on; }
  // Elements of the saved activations after the last forward.
  size_t activation_elements() const;
  // Wall time of the last forward_backward's two halves.
  double last_forward_s = 0, last_backward_s = 0;

 private:
  // Offsets of the 16 parameter tensors in `params`.
  enum Tensor { WTE, WPE, LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB, LNFW, LNFB, kTensors };
  std::array<size_t, kTensors + 1> offset_{};
  GptConfig c_;
  // Activations of the last forward (sized for B*T).
  struct Acts {
    std::vector<T> encoded, ln1, ln1_mean, ln1_rstd, qkv, atty, preatt, att, attproj, residual2, ln2, ln2_mean,
        ln2_rstd, fch, fch_gelu, fcproj, residual3, lnf, lnf_mean, lnf_rstd, logits, dlogits;
  } a_;
  int B_ = 0, T_ = 0;
  bool recompute_ = false;
  T forward(const int* tokens, const int* targets, int B, int Tn);
  // Layer l's forward from `residual`, activations into slot `slot`, output into residual3[l].
  void layer_forward(int l, int slot, const T* residual, int B, int Tn);
  T* p(Tensor t) { return params.data() + offset_[t]; }
  T* g(Tensor t) { return grads.data() + offset_[t]; }
};

// AdamW on flat fp32 arrays (decoupled weight decay, bias correction).
void adamw_step(float* params, const float* grads, float* m, float* v, size_t n, int step, float lr, float beta1,
                float beta2, float eps, float weight_decay);

}  // namespace zp
