#include "executor/llama_model.h"

#include <chrono>
#include <random>

#include "executor/ops_cpu.h"
#include "executor/ops_llama_cpu.h"
#include "models/input_error.h"

namespace zp {

LlamaConfig llama_config(const ModelSpec& m) {
  if (m.mlp != MlpKind::SwiGlu || m.norm != NormKind::RMSNorm || m.position != PositionKind::Rotary ||
      m.tied_embeddings || m.qkv_bias || m.attn_out_bias || m.mlp_bias || m.is_moe() || m.head_dim % 2 != 0) {
    throw InputError("model '" + m.name + "': not Llama-shaped (RMSNorm, SwiGLU, rotary, untied, no biases)");
  }
  return LlamaConfig{static_cast<int>(m.vocab_size), static_cast<int>(m.num_layers), static_cast<int>(m.num_heads),
                     static_cast<int>(m.num_kv_heads), static_cast<int>(m.head_dim), static_cast<int>(m.hidden_size),
                     static_cast<int>(m.ffn_hidden_size)};
}

template <class T>
LlamaModel<T>::LlamaModel(const LlamaConfig& c, uint64_t seed, TrackingAllocator* tracker)
    : params(make_buffer<T>(tracker, Component::Weights)),
      grads(make_buffer<T>(tracker, Component::Gradients)),
      c_(c),
      tracker_(tracker) {
  const size_t V = c.vocab, L = c.layers, C = c.channels, F = c.ffn;
  const size_t QD = static_cast<size_t>(c.heads) * c.head_dim, KD = static_cast<size_t>(c.kv_heads) * c.head_dim;
  const std::array<size_t, kLayerTensors> layer_sizes = {C, QD * C, KD * C, KD * C, C * QD, C, F * C, F * C, C * F};
  for (int i = 0; i < kLayerTensors; ++i) layer_off_[i + 1] = layer_off_[i] + layer_sizes[i];
  // Units: the embedding, the layers, the final norm and the output layer.
  table_.offset.assign(L + 3, 0);
  table_.offset[1] = V * C;
  for (size_t l = 0; l < L; ++l) table_.offset[l + 2] = table_.offset[l + 1] + layer_off_[kLayerTensors];
  table_.offset[L + 2] = table_.offset[L + 1] + C + V * C;
  params.assign(table_.offset.back(), T(0));
  grads.assign(table_.offset.back(), T(0));
  table_.p.assign(L + 2, nullptr);
  table_.g.assign(L + 2, nullptr);
  // N(0, 0.02) weights and unit norm gains, drawn tensor by tensor, layer by layer.
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 0.02);
  for (size_t i = 0; i < V * C; ++i) params[i] = static_cast<T>(normal(rng));
  for (LayerTensor t : {WQ, WK, WV, WO, WGATE, WUP, WDOWN}) {
    for (size_t l = 0; l < L; ++l) {
      T* w = params.data() + table_.offset[l + 1] + layer_off_[t];
      for (size_t i = 0; i < layer_sizes[t]; ++i) w[i] = static_cast<T>(normal(rng));
    }
  }
  T* head = params.data() + table_.offset[L + 1] + C;
  for (size_t i = 0; i < V * C; ++i) head[i] = static_cast<T>(normal(rng));
  for (LayerTensor t : {ATTN_NORM, MLP_NORM}) {
    for (size_t l = 0; l < L; ++l) std::fill_n(params.data() + table_.offset[l + 1] + layer_off_[t], C, T(1));
  }
  std::fill_n(params.data() + table_.offset[L + 1], C, T(1));
}

template <class T>
void LlamaModel<T>::layer_forward(int l, int slot, const T* x, int B, int Tn) {
  const int C = c_.channels, NH = c_.heads, KVH = c_.kv_heads, hs = c_.head_dim, F = c_.ffn;
  const size_t BT = static_cast<size_t>(B) * Tn, QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  const size_t s = static_cast<size_t>(slot), att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  const T base = static_cast<T>(c_.rope_base);
  T* xn1 = a_.xn1.data() + s * BT * C;
  cpu::rmsnorm_forward(xn1, a_.rstd1.data() + s * BT, x, w(ATTN_NORM, l), static_cast<int>(BT), C);
  T* q = a_.q.data() + s * BT * QD;
  T* k = a_.k.data() + s * BT * KD;
  T* v = a_.v.data() + s * BT * KD;
  cpu::matmul_forward<T>(q, xn1, w(WQ, l), nullptr, static_cast<int>(BT), C, static_cast<int>(QD));
  cpu::matmul_forward<T>(k, xn1, w(WK, l), nullptr, static_cast<int>(BT), C, static_cast<int>(KD));
  cpu::matmul_forward<T>(v, xn1, w(WV, l), nullptr, static_cast<int>(BT), C, static_cast<int>(KD));
  cpu::rope_forward(q, B, Tn, NH, hs, base);
  cpu::rope_forward(k, B, Tn, KVH, hs, base);
  T* atty = a_.atty.data() + s * BT * QD;
  cpu::gqa_attention_forward(atty, a_.att.data() + att_slot(s) * att_size, q, k, v, B, Tn, NH, KVH, hs);
  T* x2 = a_.x2.data() + s * BT * C;
  cpu::matmul_forward<T>(x2, atty, w(WO, l), nullptr, static_cast<int>(BT), static_cast<int>(QD), C);
  for (size_t i = 0; i < BT * C; ++i) x2[i] += x[i];
  T* xn2 = a_.xn2.data() + s * BT * C;
  cpu::rmsnorm_forward(xn2, a_.rstd2.data() + s * BT, x2, w(MLP_NORM, l), static_cast<int>(BT), C);
  T* gate = a_.gate.data() + s * BT * F;
  T* up = a_.up.data() + s * BT * F;
  T* h = a_.h.data() + s * BT * F;
  cpu::matmul_forward<T>(gate, xn2, w(WGATE, l), nullptr, static_cast<int>(BT), C, F);
  cpu::matmul_forward<T>(up, xn2, w(WUP, l), nullptr, static_cast<int>(BT), C, F);
  cpu::swiglu_forward(h, gate, up, BT * F);
  T* x3 = a_.x3.data() + l * BT * C;
  cpu::matmul_forward<T>(x3, h, w(WDOWN, l), nullptr, static_cast<int>(BT), F, C);
  for (size_t i = 0; i < BT * C; ++i) x3[i] += x2[i];
}

template <class T>
T LlamaModel<T>::forward(const int* tokens, const int* targets, int B, int Tn) {
  const int C = c_.channels, L = c_.layers, NH = c_.heads, KVH = c_.kv_heads, hs = c_.head_dim, F = c_.ffn, V = c_.vocab;
  const size_t BT = static_cast<size_t>(B) * Tn, QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  auto size = [this](Buffer<T>& b, size_t n, Component tag = Component::Activations) {
    if (b.get_allocator().tracker() != tracker_ || b.get_allocator().tag() != tag) b = make_buffer<T>(tracker_, tag, n);
    else b.assign(n, T(0));
  };
  if (a_.ids.get_allocator().tracker() != tracker_) a_.ids = make_buffer<int>(tracker_, Component::Activations);
  a_.ids.assign(tokens, tokens + BT);
  // With full recompute only one layer's activations exist at a time (the
  // recompute workspace); every layer's input stays as its checkpoint.
  const size_t slots = recompute_ ? 1 : static_cast<size_t>(L);
  const Component layer_tag = recompute_ ? Component::RecomputeWorkspace : Component::Activations;
  size(a_.x0, BT * C);
  size(a_.xn1, slots * BT * C, layer_tag);
  size(a_.rstd1, slots * BT, layer_tag);
  size(a_.q, slots * BT * QD, layer_tag);
  size(a_.k, slots * BT * KD, layer_tag);
  size(a_.v, slots * BT * KD, layer_tag);
  // Under selective recompute the softmax output of one layer at a time (rebuilt in backward).
  if (selective_ && !recompute_) {
    size(a_.att, static_cast<size_t>(B) * NH * Tn * Tn, Component::RecomputeWorkspace);
  } else {
    size(a_.att, slots * static_cast<size_t>(B) * NH * Tn * Tn, layer_tag);
  }
  size(a_.atty, slots * BT * QD, layer_tag);
  size(a_.x2, slots * BT * C, layer_tag);
  size(a_.xn2, slots * BT * C, layer_tag);
  size(a_.rstd2, slots * BT, layer_tag);
  size(a_.gate, slots * BT * F, layer_tag);
  size(a_.up, slots * BT * F, layer_tag);
  size(a_.h, slots * BT * F, layer_tag);
  size(a_.x3, L * BT * C);
  size(a_.xf, BT * C, Component::Logits);
  size(a_.rstdf, BT, Component::Logits);
  size(a_.logits, BT * V, Component::Logits);
  // Each unit's parameters are acquired for the ops that use them and released after.
  acquire(0, 1);
  for (size_t i = 0; i < BT; ++i) {
    const T* e = table_.p[0] + static_cast<size_t>(tokens[i]) * C;
    std::copy(e, e + C, a_.x0.begin() + static_cast<std::ptrdiff_t>(i * C));
  }
  release(0);
  for (int l = 0; l < L; ++l) {
    const T* x = l == 0 ? a_.x0.data() : a_.x3.data() + (l - 1) * BT * C;
    acquire(l + 1, l + 2);
    layer_forward(l, recompute_ ? 0 : l, x, B, Tn);
    release(l + 1);
  }
  const T* last = L > 0 ? a_.x3.data() + (L - 1) * BT * C : a_.x0.data();
  const int final_unit = L + 1;
  acquire(final_unit);
  const T* final_norm = table_.p[static_cast<size_t>(final_unit)];
  cpu::rmsnorm_forward(a_.xf.data(), a_.rstdf.data(), last, final_norm, static_cast<int>(BT), C);
  cpu::matmul_forward<T>(a_.logits.data(), a_.xf.data(), final_norm + C, nullptr, static_cast<int>(BT), C, V);
  release(final_unit);
  return cpu::crossentropy_forward_backward(a_.logits.data(), a_.logits.data(), targets, static_cast<int>(BT), V);
}

template <class T>
T LlamaModel<T>::loss(const int* tokens, const int* targets, int B, int Tn) {
  return forward(tokens, targets, B, Tn);
}

template <class T>
size_t LlamaModel<T>::activation_elements() const {
  size_t n = 0;
  for (const Buffer<T>* v : {&a_.x0, &a_.xn1, &a_.rstd1, &a_.q, &a_.k, &a_.v, &a_.att, &a_.atty, &a_.x2, &a_.xn2,
                             &a_.rstd2, &a_.gate, &a_.up, &a_.h, &a_.x3, &a_.xf, &a_.rstdf, &a_.logits}) {
    n += v->size();
  }
  return n + a_.ids.size() * sizeof(int) / sizeof(T);
}

template <class T>
T LlamaModel<T>::forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate) {
  const auto start = std::chrono::steady_clock::now();
  const T loss_value = forward(tokens, targets, B, Tn);
  const auto middle = std::chrono::steady_clock::now();
  last_forward_s = std::chrono::duration<double>(middle - start).count();
  const int C = c_.channels, L = c_.layers, NH = c_.heads, KVH = c_.kv_heads, hs = c_.head_dim, F = c_.ffn, V = c_.vocab;
  const size_t BT = static_cast<size_t>(B) * Tn, QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  const T base = static_cast<T>(c_.rope_base);
  if (!accumulate && !table_.provider) std::fill(grads.begin(), grads.end(), T(0));
  // Backward's activation gradients: one layer's worth, workspace.
  auto work = [this](size_t n) { return make_buffer<T>(tracker_, Component::Workspace, n); };
  Buffer<T> dx = work(BT * C), dxf = work(BT * C);
  const int final_unit = L + 1;
  acquire(final_unit, L);
  open_gradients(final_unit);
  const T* final_norm = table_.p[static_cast<size_t>(final_unit)];
  T* gfinal = table_.g[static_cast<size_t>(final_unit)];
  cpu::matmul_backward<T>(dxf.data(), gfinal + C, nullptr, a_.logits.data(), a_.xf.data(), final_norm + C, static_cast<int>(BT), C, V);
  const T* last = L > 0 ? a_.x3.data() + (L - 1) * BT * C : a_.x0.data();
  cpu::rmsnorm_backward(dx.data(), gfinal, dxf.data(), last, final_norm, a_.rstdf.data(), static_cast<int>(BT), C);
  finish_gradients(final_unit);
  release(final_unit);
  Buffer<T> dh = work(BT * F), dgate = work(BT * F), dup = work(BT * F), dxn2 = work(BT * C), dx2 = work(BT * C),
            datty = work(BT * QD), dq = work(BT * QD), dk = work(BT * KD), dv = work(BT * KD), dxn1 = work(BT * C),
            dprev = work(BT * C);
  for (int l = L - 1; l >= 0; --l) {
    const T* x = l == 0 ? a_.x0.data() : a_.x3.data() + (l - 1) * BT * C;
    acquire(l + 1, l >= 1 ? l : -1);
    open_gradients(l + 1);
    // Full recompute: rebuild this layer's activations from its saved input.
    if (recompute_) layer_forward(l, 0, x, B, Tn);
    const size_t s = recompute_ ? 0 : static_cast<size_t>(l);
    // Selective recompute: rebuild this layer's softmax output from its saved
    // q, k (post-rotary) and v; the attention output goes to scratch (datty,
    // zeroed below before its use).
    if (selective_ && !recompute_) {
      cpu::gqa_attention_forward(datty.data(), a_.att.data(), a_.q.data() + s * BT * QD, a_.k.data() + s * BT * KD,
                                 a_.v.data() + s * BT * KD, B, Tn, NH, KVH, hs);
    }
    for (auto* vec : {&dh, &dgate, &dup, &dxn2, &dx2, &datty, &dq, &dk, &dv, &dxn1, &dprev}) {
      std::fill(vec->begin(), vec->end(), T(0));
    }
    // x3 = x2 + down(h)
    for (size_t i = 0; i < BT * C; ++i) dx2[i] += dx[i];
    cpu::matmul_backward<T>(dh.data(), gw(WDOWN, l), nullptr, dx.data(),
                            a_.h.data() + s * BT * F, w(WDOWN, l), static_cast<int>(BT), F, C);
    cpu::swiglu_backward(dgate.data(), dup.data(), dh.data(), a_.gate.data() + s * BT * F, a_.up.data() + s * BT * F, BT * F);
    const T* xn2 = a_.xn2.data() + s * BT * C;
    cpu::matmul_backward<T>(dxn2.data(), gw(WGATE, l), nullptr, dgate.data(), xn2,
                            w(WGATE, l), static_cast<int>(BT), C, F);
    cpu::matmul_backward<T>(dxn2.data(), gw(WUP, l), nullptr, dup.data(), xn2,
                            w(WUP, l), static_cast<int>(BT), C, F);
    cpu::rmsnorm_backward(dx2.data(), gw(MLP_NORM, l), dxn2.data(), a_.x2.data() + s * BT * C, w(MLP_NORM, l),
                          a_.rstd2.data() + s * BT, static_cast<int>(BT), C);
    // x2 = x + wo(atty)
    for (size_t i = 0; i < BT * C; ++i) dprev[i] += dx2[i];
    cpu::matmul_backward<T>(datty.data(), gw(WO, l), nullptr, dx2.data(), a_.atty.data() + s * BT * QD,
                            w(WO, l), static_cast<int>(BT), static_cast<int>(QD), C);
    cpu::gqa_attention_backward(dq.data(), dk.data(), dv.data(), datty.data(), a_.q.data() + s * BT * QD,
                                a_.k.data() + s * BT * KD, a_.v.data() + s * BT * KD, a_.att.data() + att_slot(s) * att_size, B, Tn,
                                NH, KVH, hs);
    cpu::rope_backward(dq.data(), B, Tn, NH, hs, base);
    cpu::rope_backward(dk.data(), B, Tn, KVH, hs, base);
    const T* xn1 = a_.xn1.data() + s * BT * C;
    cpu::matmul_backward<T>(dxn1.data(), gw(WQ, l), nullptr, dq.data(), xn1, w(WQ, l),
                            static_cast<int>(BT), C, static_cast<int>(QD));
    cpu::matmul_backward<T>(dxn1.data(), gw(WK, l), nullptr, dk.data(), xn1, w(WK, l),
                            static_cast<int>(BT), C, static_cast<int>(KD));
    cpu::matmul_backward<T>(dxn1.data(), gw(WV, l), nullptr, dv.data(), xn1, w(WV, l),
                            static_cast<int>(BT), C, static_cast<int>(KD));
    cpu::rmsnorm_backward(dprev.data(), gw(ATTN_NORM, l), dxn1.data(), x, w(ATTN_NORM, l),
                          a_.rstd1.data() + s * BT, static_cast<int>(BT), C);
    finish_gradients(l + 1);
    release(l + 1);
    dx.swap(dprev);
  }
  open_gradients(0);
  for (size_t i = 0; i < BT; ++i) {
    T* e = table_.g[0] + static_cast<size_t>(a_.ids[i]) * C;
    for (int c = 0; c < C; ++c) e[c] += dx[i * C + c];
  }
  finish_gradients(0);
  last_backward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - middle).count();
  return loss_value;
}

template class LlamaModel<float>;
template class LlamaModel<double>;

}  // namespace zp
