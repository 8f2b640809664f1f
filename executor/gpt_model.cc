#include "executor/gpt_model.h"

#include <chrono>
#include <cmath>
#include <random>

#include "executor/ops_cpu.h"
#include "models/input_error.h"

namespace zp {

GptConfig gpt_config(const ModelSpec& m) {
  if (m.mlp != MlpKind::Gelu || m.norm != NormKind::LayerNorm || m.position != PositionKind::Learned ||
      !m.tied_embeddings || m.num_kv_heads != m.num_heads || m.ffn_hidden_size != 4 * m.hidden_size ||
      !m.qkv_bias || !m.attn_out_bias || !m.mlp_bias || m.is_moe() || m.embedding_norm) {
    throw InputError("model '" + m.name + "': the CPU executor runs GPT-2 style models only so far");
  }
  return GptConfig{static_cast<int>(m.vocab_size), static_cast<int>(m.max_seq_len), static_cast<int>(m.num_layers),
                   static_cast<int>(m.num_heads), static_cast<int>(m.hidden_size)};
}

namespace {

// Sizes `b` to n zeros under `tag`, reallocating only when the tag changes.
template <class T>
void ensure(Buffer<T>& b, TrackingAllocator* tracker, Component tag, size_t n) {
  if (b.get_allocator().tracker() != tracker || b.get_allocator().tag() != tag) {
    b = make_buffer<T>(tracker, tag, n);
  } else {
    b.assign(n, T(0));
  }
}

}  // namespace

template <class T>
GptModel<T>::GptModel(const GptConfig& c, uint64_t seed, TrackingAllocator* tracker)
    : params(make_buffer<T>(tracker, Component::Weights)),
      grads(make_buffer<T>(tracker, Component::Gradients)),
      c_(c),
      tracker_(tracker) {
  const size_t V = c.vocab, S = c.max_seq, L = c.layers, C = c.channels;
  const std::array<size_t, kTensors> sizes = {V * C, S * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
                                              L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C};
  for (int i = 0; i < kTensors; ++i) offset_[i + 1] = offset_[i] + sizes[i];
  params.assign(offset_[kTensors], T(0));
  grads.assign(offset_[kTensors], T(0));
  // GPT-2 initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm gains.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.02);
  for (Tensor t : {WTE, WPE, QKVW, ATTPROJW, FCW, FCPROJW}) {
    for (size_t i = offset_[t]; i < offset_[t + 1]; ++i) params[i] = static_cast<T>(normal(rng));
  }
  for (Tensor t : {LN1W, LN2W, LNFW}) {
    for (size_t i = offset_[t]; i < offset_[t + 1]; ++i) params[i] = T(1);
  }
}

template <class T>
void GptModel<T>::layer_forward(int l, int slot, const T* residual, int B, int Tn) {
  const int C = c_.channels, NH = c_.heads;
  const size_t BT = static_cast<size_t>(B) * Tn;
  const size_t o = slot * BT * C, att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  T* ln1 = a_.ln1.data() + o;
  cpu::layernorm_forward(ln1, a_.ln1_mean.data() + slot * BT, a_.ln1_rstd.data() + slot * BT, residual, p(LN1W) + l * C,
                         p(LN1B) + l * C, static_cast<int>(BT), C);
  T* qkv = a_.qkv.data() + 3 * o;
  cpu::matmul_forward(qkv, ln1, p(QKVW) + static_cast<size_t>(l) * 3 * C * C, p(QKVB) + l * 3 * C, static_cast<int>(BT), C, 3 * C);
  T* atty = a_.atty.data() + o;
  cpu::attention_forward(atty, a_.preatt.data(), a_.att.data() + slot * att_size, qkv, B, Tn, C, NH);
  T* attproj = a_.attproj.data();
  cpu::matmul_forward(attproj, atty, p(ATTPROJW) + static_cast<size_t>(l) * C * C, p(ATTPROJB) + l * C, static_cast<int>(BT), C, C);
  T* res2 = a_.residual2.data() + o;
  cpu::residual_forward(res2, residual, attproj, BT * C);
  T* ln2 = a_.ln2.data() + o;
  cpu::layernorm_forward(ln2, a_.ln2_mean.data() + slot * BT, a_.ln2_rstd.data() + slot * BT, res2, p(LN2W) + l * C,
                         p(LN2B) + l * C, static_cast<int>(BT), C);
  T* fch = a_.fch.data() + 4 * o;
  cpu::matmul_forward(fch, ln2, p(FCW) + static_cast<size_t>(l) * 4 * C * C, p(FCB) + l * 4 * C, static_cast<int>(BT), C, 4 * C);
  T* gelu = a_.fch_gelu.data() + 4 * o;
  cpu::gelu_forward(gelu, fch, BT * 4 * C);
  T* fcproj = a_.fcproj.data();
  cpu::matmul_forward(fcproj, gelu, p(FCPROJW) + static_cast<size_t>(l) * C * 4 * C, p(FCPROJB) + l * C, static_cast<int>(BT), 4 * C, C);
  // The layer's output is kept for every layer: it is the next layer's input
  // (the checkpoint full recompute keeps).
  cpu::residual_forward(a_.residual3.data() + l * BT * C, res2, fcproj, BT * C);
}

template <class T>
T GptModel<T>::forward(const int* tokens, const int* targets, int B, int Tn) {
  const int C = c_.channels, L = c_.layers, NH = c_.heads, V = c_.vocab;
  const size_t BT = static_cast<size_t>(B) * Tn;
  B_ = B;
  T_ = Tn;
  // With full recompute only one layer's activations exist at a time: the
  // recompute workspace; every layer's input stays as its checkpoint.
  const size_t slots = recompute_ ? 1 : static_cast<size_t>(L);
  const Component layer_tag = recompute_ ? Component::RecomputeWorkspace : Component::Activations;
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  TrackingAllocator* t = tracker_;
  ensure(a_.ids, t, Component::Activations, BT);
  std::copy(tokens, tokens + BT, a_.ids.begin());
  ensure(a_.encoded, t, Component::Activations, BT * C);
  ensure(a_.ln1, t, layer_tag, slots * BT * C);
  ensure(a_.ln1_mean, t, layer_tag, slots * BT);
  ensure(a_.ln1_rstd, t, layer_tag, slots * BT);
  ensure(a_.qkv, t, layer_tag, slots * BT * 3 * C);
  ensure(a_.att, t, layer_tag, slots * att_size);
  ensure(a_.atty, t, layer_tag, slots * BT * C);
  ensure(a_.residual2, t, layer_tag, slots * BT * C);
  ensure(a_.ln2, t, layer_tag, slots * BT * C);
  ensure(a_.ln2_mean, t, layer_tag, slots * BT);
  ensure(a_.ln2_rstd, t, layer_tag, slots * BT);
  ensure(a_.fch, t, layer_tag, slots * BT * 4 * C);
  ensure(a_.fch_gelu, t, layer_tag, slots * BT * 4 * C);
  // Layer outputs: residual3[l] is layer l+1's input (its checkpoint under
  // full recompute); the last is the final norm's input.
  ensure(a_.residual3, t, Component::Activations, L * BT * C);
  ensure(a_.lnf, t, Component::Logits, BT * C);
  ensure(a_.lnf_mean, t, Component::Logits, BT);
  ensure(a_.lnf_rstd, t, Component::Logits, BT);
  ensure(a_.logits, t, Component::Logits, BT * V);
  ensure(a_.preatt, t, Component::Workspace, att_size);
  ensure(a_.attproj, t, Component::Workspace, BT * C);
  ensure(a_.fcproj, t, Component::Workspace, BT * C);

  cpu::encoder_forward(a_.encoded.data(), a_.ids.data(), p(WTE), p(WPE), B, Tn, C);
  for (int l = 0; l < L; ++l) {
    const T* residual = l == 0 ? a_.encoded.data() : a_.residual3.data() + (l - 1) * BT * C;
    layer_forward(l, recompute_ ? 0 : l, residual, B, Tn);
  }
  const T* last = L > 0 ? a_.residual3.data() + (L - 1) * BT * C : a_.encoded.data();
  cpu::layernorm_forward(a_.lnf.data(), a_.lnf_mean.data(), a_.lnf_rstd.data(), last, p(LNFW), p(LNFB),
                         static_cast<int>(BT), C);
  cpu::matmul_forward<T>(a_.logits.data(), a_.lnf.data(), p(WTE), nullptr, static_cast<int>(BT), C, V);
  // The gradient of the mean loss overwrites the logits (each row is read before it is written).
  return cpu::crossentropy_forward_backward(a_.logits.data(), a_.logits.data(), targets, static_cast<int>(BT), V);
}

template <class T>
T GptModel<T>::loss(const int* tokens, const int* targets, int B, int Tn) {
  return forward(tokens, targets, B, Tn);
}

template <class T>
size_t GptModel<T>::activation_elements() const {
  size_t n = 0;
  for (const Buffer<T>* v : {&a_.encoded, &a_.ln1, &a_.ln1_mean, &a_.ln1_rstd, &a_.qkv, &a_.atty, &a_.att,
                             &a_.residual2, &a_.ln2, &a_.ln2_mean, &a_.ln2_rstd, &a_.fch, &a_.fch_gelu, &a_.residual3,
                             &a_.lnf, &a_.lnf_mean, &a_.lnf_rstd, &a_.logits}) {
    n += v->size();
  }
  return n + a_.ids.size() * sizeof(int) / sizeof(T);
}

template <class T>
T GptModel<T>::forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate) {
  const auto start = std::chrono::steady_clock::now();
  const T loss_value = forward(tokens, targets, B, Tn);
  const auto middle = std::chrono::steady_clock::now();
  last_forward_s = std::chrono::duration<double>(middle - start).count();
  const int C = c_.channels, L = c_.layers, NH = c_.heads, V = c_.vocab;
  const size_t BT = static_cast<size_t>(B) * Tn;
  if (!accumulate) std::fill(grads.begin(), grads.end(), T(0));
  // Backward's activation gradients: one layer's worth, workspace.
  auto work = [this](size_t n) { return make_buffer<T>(tracker_, Component::Workspace, n); };
  Buffer<T> dresidual = work(BT * C), dlnf = work(BT * C);
  cpu::matmul_backward<T>(dlnf.data(), g(WTE), nullptr, a_.logits.data(), a_.lnf.data(), p(WTE), static_cast<int>(BT), C, V);
  const T* last = L > 0 ? a_.residual3.data() + (L - 1) * BT * C : a_.encoded.data();
  cpu::layernorm_backward(dresidual.data(), g(LNFW), g(LNFB), dlnf.data(), last, p(LNFW), a_.lnf_mean.data(),
                          a_.lnf_rstd.data(), static_cast<int>(BT), C);
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  Buffer<T> dfcproj = work(BT * C), dgelu = work(BT * 4 * C), dfch = work(BT * 4 * C), dln2 = work(BT * C),
            dres2 = work(BT * C), dattproj = work(BT * C), datty = work(BT * C), dqkv = work(BT * 3 * C),
            dln1 = work(BT * C), dpreatt = work(att_size), datt = work(att_size), dprev = work(BT * C);
  for (int l = L - 1; l >= 0; --l) {
    const T* residual = l == 0 ? a_.encoded.data() : a_.residual3.data() + (l - 1) * BT * C;
    const size_t slot = recompute_ ? 0 : static_cast<size_t>(l);
    // Full recompute: rebuild this layer's activations from its saved input.
    if (recompute_) layer_forward(l, 0, residual, B, Tn);
    const size_t o = slot * BT * C;
    for (auto* v : {&dfcproj, &dgelu, &dfch, &dln2, &dres2, &dattproj, &datty, &dqkv, &dln1, &dpreatt, &datt, &dprev}) {
      std::fill(v->begin(), v->end(), T(0));
    }
    // residual3 = residual2 + fcproj
    cpu::residual_backward(dres2.data(), dfcproj.data(), dresidual.data(), BT * C);
    cpu::matmul_backward(dgelu.data(), g(FCPROJW) + static_cast<size_t>(l) * C * 4 * C, g(FCPROJB) + l * C, dfcproj.data(),
                         a_.fch_gelu.data() + 4 * o, p(FCPROJW) + static_cast<size_t>(l) * C * 4 * C, static_cast<int>(BT), 4 * C, C);
    cpu::gelu_backward(dfch.data(), a_.fch.data() + 4 * o, dgelu.data(), BT * 4 * C);
    cpu::matmul_backward(dln2.data(), g(FCW) + static_cast<size_t>(l) * 4 * C * C, g(FCB) + l * 4 * C, dfch.data(),
                         a_.ln2.data() + o, p(FCW) + static_cast<size_t>(l) * 4 * C * C, static_cast<int>(BT), C, 4 * C);
    cpu::layernorm_backward(dres2.data(), g(LN2W) + l * C, g(LN2B) + l * C, dln2.data(), a_.residual2.data() + o,
                            p(LN2W) + l * C, a_.ln2_mean.data() + slot * BT, a_.ln2_rstd.data() + slot * BT, static_cast<int>(BT), C);
    // residual2 = residual + attproj
    cpu::residual_backward(dprev.data(), dattproj.data(), dres2.data(), BT * C);
    cpu::matmul_backward(datty.data(), g(ATTPROJW) + static_cast<size_t>(l) * C * C, g(ATTPROJB) + l * C, dattproj.data(),
                         a_.atty.data() + o, p(ATTPROJW) + static_cast<size_t>(l) * C * C, static_cast<int>(BT), C, C);
    cpu::attention_backward(dqkv.data(), dpreatt.data(), datt.data(), datty.data(), a_.qkv.data() + 3 * o,
                            a_.att.data() + slot * att_size, B, Tn, C, NH);
    cpu::matmul_backward(dln1.data(), g(QKVW) + static_cast<size_t>(l) * 3 * C * C, g(QKVB) + l * 3 * C, dqkv.data(),
                         a_.ln1.data() + o, p(QKVW) + static_cast<size_t>(l) * 3 * C * C, static_cast<int>(BT), C, 3 * C);
    cpu::layernorm_backward(dprev.data(), g(LN1W) + l * C, g(LN1B) + l * C, dln1.data(), residual, p(LN1W) + l * C,
                            a_.ln1_mean.data() + slot * BT, a_.ln1_rstd.data() + slot * BT, static_cast<int>(BT), C);
    dresidual.swap(dprev);
  }
  cpu::encoder_backward(g(WTE), g(WPE), dresidual.data(), a_.ids.data(), B, Tn, C);
  last_backward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - middle).count();
  return loss_value;
}

void adamw_step(float* params, const float* grads, float* m, float* v, size_t n, int step, float lr, float beta1,
                float beta2, float eps, float weight_decay) {
  const float c1 = 1.0f - std::pow(beta1, static_cast<float>(step));
  const float c2 = 1.0f - std::pow(beta2, static_cast<float>(step));
  for (size_t i = 0; i < n; ++i) {
    m[i] = beta1 * m[i] + (1 - beta1) * grads[i];
    v[i] = beta2 * v[i] + (1 - beta2) * grads[i] * grads[i];
    const float mh = m[i] / c1, vh = v[i] / c2;
    params[i] -= lr * (mh / (std::sqrt(vh) + eps) + weight_decay * params[i]);
  }
}

template class GptModel<float>;
template class GptModel<double>;

}  // namespace zp
