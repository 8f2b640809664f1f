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
  const std::array<size_t, kLayerTensors> layer_sizes = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, C * 4 * C, C};
  for (int i = 0; i < kLayerTensors; ++i) layer_off_[i + 1] = layer_off_[i] + layer_sizes[i];
  // Units: the embedding (wte, wpe), the layers, the final norm (weight, bias).
  unit_offset_.assign(L + 3, 0);
  unit_offset_[1] = V * C + S * C;
  for (size_t l = 0; l < L; ++l) unit_offset_[l + 2] = unit_offset_[l + 1] + layer_off_[kLayerTensors];
  unit_offset_[L + 2] = unit_offset_[L + 1] + 2 * C;
  params.assign(unit_offset_.back(), T(0));
  grads.assign(unit_offset_.back(), T(0));
  unit_p_.assign(L + 2, nullptr);
  unit_g_.assign(L + 2, nullptr);
  // GPT-2 initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm
  // gains; drawn tensor by tensor, layer by layer within a tensor.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.02);
  for (size_t i = 0; i < unit_offset_[1]; ++i) params[i] = static_cast<T>(normal(rng));  // wte, then wpe
  for (LayerTensor t : {QKVW, ATTPROJW, FCW, FCPROJW}) {
    for (size_t l = 0; l < L; ++l) {
      T* w = params.data() + unit_offset_[l + 1] + layer_off_[t];
      for (size_t i = 0; i < layer_sizes[t]; ++i) w[i] = static_cast<T>(normal(rng));
    }
  }
  for (LayerTensor t : {LN1W, LN2W}) {
    for (size_t l = 0; l < L; ++l) std::fill_n(params.data() + unit_offset_[l + 1] + layer_off_[t], C, T(1));
  }
  std::fill_n(params.data() + unit_offset_[L + 1], C, T(1));
}

template <class T>
void GptModel<T>::acquire(int unit, int next) {
  const auto u = static_cast<size_t>(unit);
  unit_p_[u] = units_ ? units_->acquire(unit) : params.data() + unit_offset_[u];
  if (units_ && next >= 0) units_->prefetch(next);
}

template <class T>
void GptModel<T>::release(int unit) {
  if (units_) units_->release(unit);
  unit_p_[static_cast<size_t>(unit)] = nullptr;
}

template <class T>
void GptModel<T>::open_gradients(int unit) {
  const auto u = static_cast<size_t>(unit);
  unit_g_[u] = units_ ? units_->gradients(unit) : grads.data() + unit_offset_[u];
}

template <class T>
void GptModel<T>::finish_gradients(int unit) {
  if (units_) units_->finished(unit);
  unit_g_[static_cast<size_t>(unit)] = nullptr;
}

template <class T>
void GptModel<T>::layer_forward(int l, int slot, const T* residual, int B, int Tn) {
  const int C = c_.channels, NH = c_.heads;
  const size_t BT = static_cast<size_t>(B) * Tn;
  const size_t o = slot * BT * C, att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  T* ln1 = a_.ln1.data() + o;
  cpu::layernorm_forward(ln1, a_.ln1_mean.data() + slot * BT, a_.ln1_rstd.data() + slot * BT, residual, w(LN1W, l),
                         w(LN1B, l), static_cast<int>(BT), C);
  T* qkv = a_.qkv.data() + 3 * o;
  cpu::matmul_forward(qkv, ln1, w(QKVW, l), w(QKVB, l), static_cast<int>(BT), C, 3 * C);
  T* atty = a_.atty.data() + o;
  cpu::attention_forward(atty, a_.preatt.data(), a_.att.data() + att_slot(static_cast<size_t>(slot)) * att_size, qkv, B, Tn,
                         C, NH);
  T* attproj = a_.attproj.data();
  cpu::matmul_forward(attproj, atty, w(ATTPROJW, l), w(ATTPROJB, l), static_cast<int>(BT), C, C);
  T* res2 = a_.residual2.data() + o;
  cpu::residual_forward(res2, residual, attproj, BT * C);
  T* ln2 = a_.ln2.data() + o;
  cpu::layernorm_forward(ln2, a_.ln2_mean.data() + slot * BT, a_.ln2_rstd.data() + slot * BT, res2, w(LN2W, l),
                         w(LN2B, l), static_cast<int>(BT), C);
  T* fch = a_.fch.data() + 4 * o;
  cpu::matmul_forward(fch, ln2, w(FCW, l), w(FCB, l), static_cast<int>(BT), C, 4 * C);
  T* gelu = a_.fch_gelu.data() + 4 * o;
  cpu::gelu_forward(gelu, fch, BT * 4 * C);
  T* fcproj = a_.fcproj.data();
  cpu::matmul_forward(fcproj, gelu, w(FCPROJW, l), w(FCPROJB, l), static_cast<int>(BT), 4 * C, C);
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
  // Under selective recompute the softmax output of one layer at a time (rebuilt in backward).
  if (selective_ && !recompute_) {
    ensure(a_.att, t, Component::RecomputeWorkspace, att_size);
  } else {
    ensure(a_.att, t, layer_tag, slots * att_size);
  }
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

  // Each unit's parameters are acquired for the ops that use them and released after.
  const int final_unit = L + 1;
  acquire(0, L > 0 ? 1 : final_unit);
  cpu::encoder_forward(a_.encoded.data(), a_.ids.data(), unit_p_[0], unit_p_[0] + wpe_offset(), B, Tn, C);
  release(0);
  for (int l = 0; l < L; ++l) {
    const T* residual = l == 0 ? a_.encoded.data() : a_.residual3.data() + (l - 1) * BT * C;
    acquire(l + 1, l + 2);
    layer_forward(l, recompute_ ? 0 : l, residual, B, Tn);
    release(l + 1);
  }
  const T* last = L > 0 ? a_.residual3.data() + (L - 1) * BT * C : a_.encoded.data();
  acquire(final_unit, 0);
  const T* lnf = unit_p_[static_cast<size_t>(final_unit)];
  cpu::layernorm_forward(a_.lnf.data(), a_.lnf_mean.data(), a_.lnf_rstd.data(), last, lnf, lnf + C, static_cast<int>(BT), C);
  release(final_unit);
  acquire(0);  // the tied output layer
  cpu::matmul_forward<T>(a_.logits.data(), a_.lnf.data(), unit_p_[0], nullptr, static_cast<int>(BT), C, V);
  release(0);
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
  if (!accumulate && !units_) std::fill(grads.begin(), grads.end(), T(0));
  // Backward's activation gradients: one layer's worth, workspace.
  auto work = [this](size_t n) { return make_buffer<T>(tracker_, Component::Workspace, n); };
  Buffer<T> dresidual = work(BT * C), dlnf = work(BT * C);
  // The embedding's gradients come from the tied output layer now and the
  // token lookup at the end: its gradient buffer stays open throughout.
  const int final_unit = L + 1;
  open_gradients(0);
  acquire(0, final_unit);
  cpu::matmul_backward<T>(dlnf.data(), unit_g_[0], nullptr, a_.logits.data(), a_.lnf.data(), unit_p_[0], static_cast<int>(BT), C, V);
  release(0);
  const T* last = L > 0 ? a_.residual3.data() + (L - 1) * BT * C : a_.encoded.data();
  acquire(final_unit, L);
  open_gradients(final_unit);
  T* glnf = unit_g_[static_cast<size_t>(final_unit)];
  cpu::layernorm_backward(dresidual.data(), glnf, glnf + C, dlnf.data(), last, unit_p_[static_cast<size_t>(final_unit)],
                          a_.lnf_mean.data(), a_.lnf_rstd.data(), static_cast<int>(BT), C);
  finish_gradients(final_unit);
  release(final_unit);
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  Buffer<T> dfcproj = work(BT * C), dgelu = work(BT * 4 * C), dfch = work(BT * 4 * C), dln2 = work(BT * C),
            dres2 = work(BT * C), dattproj = work(BT * C), datty = work(BT * C), dqkv = work(BT * 3 * C),
            dln1 = work(BT * C), dpreatt = work(att_size), datt = work(att_size), dprev = work(BT * C);
  for (int l = L - 1; l >= 0; --l) {
    const T* residual = l == 0 ? a_.encoded.data() : a_.residual3.data() + (l - 1) * BT * C;
    const size_t slot = recompute_ ? 0 : static_cast<size_t>(l);
    acquire(l + 1, l >= 1 ? l : -1);
    open_gradients(l + 1);
    // Full recompute: rebuild this layer's activations from its saved input.
    if (recompute_) layer_forward(l, 0, residual, B, Tn);
    const size_t o = slot * BT * C;
    // Selective recompute: rebuild this layer's softmax output from its saved q, k
    // (the attention output goes to a scratch buffer: the saved one is the same).
    if (selective_ && !recompute_) {
      cpu::attention_forward(a_.attproj.data(), a_.preatt.data(), a_.att.data(), a_.qkv.data() + 3 * o, B, Tn, C, NH);
    }
    for (auto* v : {&dfcproj, &dgelu, &dfch, &dln2, &dres2, &dattproj, &datty, &dqkv, &dln1, &dpreatt, &datt, &dprev}) {
      std::fill(v->begin(), v->end(), T(0));
    }
    // residual3 = residual2 + fcproj
    cpu::residual_backward(dres2.data(), dfcproj.data(), dresidual.data(), BT * C);
    cpu::matmul_backward(dgelu.data(), gw(FCPROJW, l), gw(FCPROJB, l), dfcproj.data(),
                         a_.fch_gelu.data() + 4 * o, w(FCPROJW, l), static_cast<int>(BT), 4 * C, C);
    cpu::gelu_backward(dfch.data(), a_.fch.data() + 4 * o, dgelu.data(), BT * 4 * C);
    cpu::matmul_backward(dln2.data(), gw(FCW, l), gw(FCB, l), dfch.data(),
                         a_.ln2.data() + o, w(FCW, l), static_cast<int>(BT), C, 4 * C);
    cpu::layernorm_backward(dres2.data(), gw(LN2W, l), gw(LN2B, l), dln2.data(), a_.residual2.data() + o,
                            w(LN2W, l), a_.ln2_mean.data() + slot * BT, a_.ln2_rstd.data() + slot * BT, static_cast<int>(BT), C);
    // residual2 = residual + attproj
    cpu::residual_backward(dprev.data(), dattproj.data(), dres2.data(), BT * C);
    cpu::matmul_backward(datty.data(), gw(ATTPROJW, l), gw(ATTPROJB, l), dattproj.data(),
                         a_.atty.data() + o, w(ATTPROJW, l), static_cast<int>(BT), C, C);
    cpu::attention_backward(dqkv.data(), dpreatt.data(), datt.data(), datty.data(), a_.qkv.data() + 3 * o,
                            a_.att.data() + att_slot(slot) * att_size, B, Tn, C, NH);
    cpu::matmul_backward(dln1.data(), gw(QKVW, l), gw(QKVB, l), dqkv.data(),
                         a_.ln1.data() + o, w(QKVW, l), static_cast<int>(BT), C, 3 * C);
    cpu::layernorm_backward(dprev.data(), gw(LN1W, l), gw(LN1B, l), dln1.data(), residual, w(LN1W, l),
                            a_.ln1_mean.data() + slot * BT, a_.ln1_rstd.data() + slot * BT, static_cast<int>(BT), C);
    finish_gradients(l + 1);
    release(l + 1);
    dresidual.swap(dprev);
  }
  cpu::encoder_backward(unit_g_[0], unit_g_[0] + wpe_offset(), dresidual.data(), a_.ids.data(), B, Tn, C);
  finish_gradients(0);
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
