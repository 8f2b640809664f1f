#include "executor/llama_model.h"

#include <algorithm>
#include <stdexcept>

#include "executor/init_normal.h"
#include "executor/model_step.h"
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
LlamaModel<T>::LlamaModel(const LlamaConfig& c, uint64_t seed, TrackingAllocator* tracker, PipelineStage stage,
                          TensorParallel tp)
    : params(make_buffer<T>(tracker, Component::Weights)),
      grads(make_buffer<T>(tracker, Component::Gradients)),
      c_(c),
      tracker_(tracker),
      be_(make_backend<T>(tracker)) {
  const size_t V = c.vocab, L = c.layers, C = c.channels, F = c.ffn;
  const size_t QD = static_cast<size_t>(c.heads) * c.head_dim, KD = static_cast<size_t>(c.kv_heads) * c.head_dim;
  if (stage.layers < 0) stage.layers = c.layers - stage.first_layer;
  stage_ = stage;
  tp_ = tp.comm;
  split_ = TokenSplit<T>{tp.comm, tp.sequence_parallel};
  const int ranks = tp.comm ? tp.comm->size() : 1;
  if (c.heads % ranks || c.kv_heads % ranks || c.ffn % ranks) {
    throw std::runtime_error("tensor parallel " + std::to_string(ranks) + ": must divide the heads, KV heads and FFN");
  }
  const size_t t = static_cast<size_t>(ranks), r = tp.comm ? static_cast<size_t>(tp.comm->rank()) : 0;
  const VocabShard vocab = vocab_shard(c.vocab, ranks, static_cast<int>(r));
  heads_local_ = c.heads / ranks;
  kv_local_ = c.kv_heads / ranks;
  ffn_local_ = c.ffn / ranks;
  vocab_rows_ = vocab.rows;
  vocab_local_ = vocab.real;
  vocab_start_ = vocab.start;
  const size_t QDl = QD / t, KDl = KD / t, Fl = F / t, Vl = static_cast<size_t>(vocab.rows), Vr = static_cast<size_t>(vocab.real);
  // One layer's tensors, whole and on this rank (column-parallel Q, K, V,
  // gate and up keep 1/t of their output rows, row-parallel O and down 1/t
  // of their input columns).
  const std::array<size_t, kLayerTensors> whole_sizes = {C, QD * C, KD * C, KD * C, C * QD, C, F * C, F * C, C * F};
  const std::array<size_t, kLayerTensors> layer_sizes = {C, QDl * C, KDl * C, KDl * C, C * QDl, C, Fl * C, Fl * C, C * Fl};
  std::array<size_t, kLayerTensors + 1> whole_off{};
  for (int i = 0; i < kLayerTensors; ++i) {
    layer_off_[i + 1] = layer_off_[i] + layer_sizes[i];
    whole_off[i + 1] = whole_off[i] + whole_sizes[i];
  }
  // The whole model's units (the embedding, the layers, the final norm and
  // the output layer), initialised with N(0, 0.02) weights and unit norm
  // gains, each weight's value drawn by its index in this layout
  // (executor/init_normal.h), so every pipeline stage starts from the one
  // model's values.
  std::vector<size_t> whole(L + 3, 0);
  whole[1] = V * C;
  for (size_t l = 0; l < L; ++l) whole[l + 2] = whole[l + 1] + whole_off[kLayerTensors];
  whole[L + 2] = whole[L + 1] + C + V * C;
  std::vector<T> init(whole[L + 2], T(0));
  constexpr double kInitStddev = 0.02;
  fill_normal(init.data(), V * C, kInitStddev, seed, 0);
  for (LayerTensor t : {WQ, WK, WV, WO, WGATE, WUP, WDOWN}) {
    for (size_t l = 0; l < L; ++l) {
      const size_t at = whole[l + 1] + whole_off[t];
      fill_normal(init.data() + at, whole_sizes[t], kInitStddev, seed, at);
    }
  }
  const size_t head_at = whole[L + 1] + C;
  fill_normal(init.data() + head_at, V * C, kInitStddev, seed, head_at);
  for (LayerTensor t : {ATTN_NORM, MLP_NORM}) {
    for (size_t l = 0; l < L; ++l) std::fill_n(init.data() + whole[l + 1] + whole_off[t], C, T(1));
  }
  std::fill_n(init.data() + whole[L + 1], C, T(1));
  // This stage's units, in order, and this rank's share of each tensor.
  const std::array<size_t, 3> unit_sizes = {Vl * C, layer_off_[kLayerTensors], C + Vl * C};
  table_.offset.assign(L + 2, 0);
  table_.size.assign(L + 2, 0);
  size_t held = 0;
  auto hold = [&](size_t u, size_t n) {
    table_.offset[u] = held;
    table_.size[u] = n;
    held += n;
  };
  if (stage.first) hold(0, unit_sizes[0]);
  for (int l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) hold(static_cast<size_t>(l) + 1, unit_sizes[1]);
  if (stage.last) hold(L + 1, unit_sizes[2]);
  params.assign(held, T(0));
  grads.assign(held, T(0));
  std::vector<T> local(held, T(0));  // built on the host, then copied to the device
  // Rows [first, first + count) of `rows` rows of `width` columns, or columns of each row.
  auto rows_of = [](const T* from, T* to, size_t width, size_t first, size_t count) {
    std::copy_n(from + first * width, count * width, to);
  };
  auto cols_of = [](const T* from, T* to, size_t rows, size_t width, size_t first, size_t count) {
    for (size_t i = 0; i < rows; ++i) std::copy_n(from + i * width + first, count, to + i * count);
  };
  if (stage.first) rows_of(init.data(), local.data() + table_.offset[0], C, r * Vl, Vr);  // then padding rows
  for (int l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) {
    const T* g = init.data() + whole[static_cast<size_t>(l) + 1];
    T* o = local.data() + table_.offset[static_cast<size_t>(l) + 1];
    for (LayerTensor lt : {ATTN_NORM, MLP_NORM}) std::copy_n(g + whole_off[lt], C, o + layer_off_[lt]);
    rows_of(g + whole_off[WQ], o + layer_off_[WQ], C, r * QDl, QDl);
    rows_of(g + whole_off[WK], o + layer_off_[WK], C, r * KDl, KDl);
    rows_of(g + whole_off[WV], o + layer_off_[WV], C, r * KDl, KDl);
    cols_of(g + whole_off[WO], o + layer_off_[WO], C, QD, r * QDl, QDl);
    rows_of(g + whole_off[WGATE], o + layer_off_[WGATE], C, r * Fl, Fl);
    rows_of(g + whole_off[WUP], o + layer_off_[WUP], C, r * Fl, Fl);
    cols_of(g + whole_off[WDOWN], o + layer_off_[WDOWN], C, F, r * Fl, Fl);
  }
  if (stage.last) {
    T* o = local.data() + table_.offset[L + 1];
    std::copy_n(init.data() + whole[L + 1], C, o);                          // final norm
    rows_of(init.data() + whole[L + 1] + C, o + C, C, r * Vl, Vr);           // output layer rows (then padding)
  }
  copy_in(params, local.data(), held);
  table_.p.assign(L + 2, nullptr);
  table_.g.assign(L + 2, nullptr);
  *dinput_ = make_buffer<T>(tracker, Component::Workspace);
}

template <class T>
void LlamaModel<T>::select(int k) {
  acts_.select(k, recompute_, selective_);
  a_ = acts_.current;
  L_ = acts_.layer;
  A_ = acts_.scores;
}



template <class T>
const T* LlamaModel<T>::stage_output(int k) const {
  const Acts& a = acts_.of(k);
  return stage_.layers > 0 ? a.out.data() : a.x0.data();
}

template <class T>
void LlamaModel<T>::layer_forward(int l, int local, int slot, const T* x, int B, int Tn, bool rebuild) {
  // BT tokens go through the tensor-parallel products, Tl of them (BT / t
  // under sequence parallelism) through the norms and residuals.
  const int C = c_.channels, NH = heads_local_, KVH = kv_local_, hs = c_.head_dim, F = ffn_local_;
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT), TlC = Tl * C;
  const size_t QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  const size_t s = static_cast<size_t>(slot), att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  const acc_t<T> base = static_cast<acc_t<T>>(c_.rope_base);
  Acts& ws = *acts_.shared;
  T* xn1 = L_->xn1.data() + s * TlC;
  be_->rmsnorm_forward(xn1, L_->rstd1.data() + s * Tl, x, w(ATTN_NORM, l), static_cast<int>(Tl), C);
  const T* xn1_all = split_.gather(xn1, ws.gathered, TlC);
  T* q = L_->q.data() + s * BT * QD;
  T* k = L_->k.data() + s * BT * KD;
  T* v = L_->v.data() + s * BT * KD;
  be_->matmul_forward(q, xn1_all, w(WQ, l), nullptr, static_cast<int>(BT), C, static_cast<int>(QD));
  be_->matmul_forward(k, xn1_all, w(WK, l), nullptr, static_cast<int>(BT), C, static_cast<int>(KD));
  be_->matmul_forward(v, xn1_all, w(WV, l), nullptr, static_cast<int>(BT), C, static_cast<int>(KD));
  be_->rope_forward(q, B, Tn, NH, hs, base);
  be_->rope_forward(k, B, Tn, KVH, hs, base);
  T* atty = L_->atty.data() + s * BT * QD;
  if (flash_) {
    be_->flash_attention_forward({atty, QD}, L_->lse.data() + s * static_cast<size_t>(B) * NH * Tn, {q, QD}, {k, KD}, {v, KD},
                                 B, Tn, NH, KVH, hs);
  } else {
    be_->gqa_attention_forward(atty, A_->att.data() + att_slot(s) * att_size, q, k, v, B, Tn, NH, KVH, hs);
  }
  // Row-parallel: the ranks' partial products over every token, summed (this
  // rank's tokens under sequence parallelism), then the residual.
  be_->matmul_forward(ws.partial.data(), atty, w(WO, l), nullptr, static_cast<int>(BT), static_cast<int>(QD), C);
  const T* attn = split_.reduce(ws.partial.data(), ws.reduced, TlC);
  T* x2 = L_->x2.data() + s * TlC;
  be_->residual_forward(x2, x, attn, TlC);
  T* xn2 = L_->xn2.data() + s * TlC;
  be_->rmsnorm_forward(xn2, L_->rstd2.data() + s * Tl, x2, w(MLP_NORM, l), static_cast<int>(Tl), C);
  const T* xn2_all = split_.gather(xn2, ws.gathered, TlC);
  T* gate = L_->gate.data() + s * BT * F;
  T* up = L_->up.data() + s * BT * F;
  T* h = L_->h.data() + s * BT * F;
  be_->matmul_forward(gate, xn2_all, w(WGATE, l), nullptr, static_cast<int>(BT), C, F);
  be_->matmul_forward(up, xn2_all, w(WUP, l), nullptr, static_cast<int>(BT), C, F);
  be_->swiglu_forward(h, gate, up, BT * F);
  be_->matmul_forward(ws.partial.data(), h, w(WDOWN, l), nullptr, static_cast<int>(BT), F, C);
  const T* down = split_.reduce(ws.partial.data(), ws.reduced, TlC);
  if (rebuild) return;
  // The stage's last layer writes the stage's output when a later stage takes it.
  T* x3 = a_->x3.data() + static_cast<size_t>(local) * TlC;
  if (local + 1 == stage_.layers && !stage_.last) {
    if (a_->out.empty()) a_->out = make_buffer<T>(tracker_, Component::Workspace, TlC);
    x3 = a_->out.data();
  } else if (local + 1 == stage_.layers) {
    x3 = a_->final_in.data();  // the final norm's input, a logits-side row of the cost model
  }
  be_->residual_forward(x3, x2, down, TlC);
}

template <class T>
acc_t<T> LlamaModel<T>::stage_forward(int k, const int* tokens, const int* targets, const T* input, int B, int Tn) {
  select(k);
  const int C = c_.channels, L = c_.layers, NH = heads_local_, KVH = kv_local_, hs = c_.head_dim, F = ffn_local_, V = vocab_local_;
  const int n = stage_.layers, l0 = stage_.first_layer;
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT), TlC = Tl * C;
  const size_t QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  if (split_.split() && BT % static_cast<size_t>(tp_->size()) != 0) {
    throw std::runtime_error("sequence parallelism: micro-batch x sequence must divide by the tensor-parallel size");
  }
  // Every activation is written whole by its kernel before anything reads it: not zeroed.
  auto size = [this](auto& b, size_t n, Component tag = Component::Activations) { ensure_output_buffer(b, tracker_, tag, n); };
  if (stage_.first) {
    size(a_->ids, BT);
    copy_in(a_->ids, tokens, BT);
  }
  // With full recompute only one layer's activations exist at a time (the
  // recompute workspace); every layer's input stays as its checkpoint.
  // Tensors outside the tensor-parallel regions hold Tl token rows.
  const size_t slots = recompute_ ? 1 : static_cast<size_t>(n);
  const Component layer_tag = recompute_ ? Component::RecomputeWorkspace : Component::Activations;
  size(a_->x0, TlC);
  size(L_->xn1, slots * TlC, layer_tag);
  size(L_->rstd1, slots * Tl, layer_tag);
  size(L_->q, slots * BT * QD, layer_tag);
  size(L_->k, slots * BT * KD, layer_tag);
  size(L_->v, slots * BT * KD, layer_tag);
  // Under selective recompute the softmax output of one layer at a time
  // (rebuilt in backward); flash attention keeps each layer's log-sum-exp.
  if (flash_) {
    size(L_->lse, slots * static_cast<size_t>(B) * NH * Tn, layer_tag);
  } else if (selective_ && !recompute_) {
    size(A_->att, static_cast<size_t>(B) * NH * Tn * Tn, Component::RecomputeWorkspace);
  } else {
    size(A_->att, slots * static_cast<size_t>(B) * NH * Tn * Tn, layer_tag);
  }
  size(L_->atty, slots * BT * QD, layer_tag);
  size(L_->x2, slots * TlC, layer_tag);
  size(L_->xn2, slots * TlC, layer_tag);
  size(L_->rstd2, slots * Tl, layer_tag);
  size(L_->gate, slots * BT * F, layer_tag);
  size(L_->up, slots * BT * F, layer_tag);
  size(L_->h, slots * BT * F, layer_tag);
  // Layer outputs: x3[l] is layer l+1's input; the last stage's last layer
  // writes the final norm's input, which the cost model counts with the logits.
  size(a_->x3, static_cast<size_t>(std::max(n - 1, 0)) * TlC);
  if (stage_.last) {
    size(a_->final_in, n > 0 ? TlC : 0, Component::Logits);
    size(a_->xf, TlC, Component::Logits);
    size(a_->rstdf, Tl, Component::Logits);
    size(a_->logits, BT * static_cast<size_t>(vocab_rows_), Component::Logits);  // the padded columns unused
  }
  Acts& ws = *acts_.shared;
  size(ws.partial, BT * C, Component::Workspace);
  size(ws.gathered, split_.split() ? BT * C : 0, Component::Workspace);
  size(ws.reduced, split_.split() ? TlC : 0, Component::Workspace);
  // Each unit's parameters are acquired for the ops that use them and released after.
  const int final_unit = L + 1;
  if (stage_.first) {
    acquire(0, n > 0 ? l0 + 1 : final_unit);
    // Each rank's vocabulary rows (all of them with one rank), summed over
    // the ranks (reduce-scattered to this rank's tokens under sequence parallelism).
    if (split_.split()) {
      vocab_parallel_lookup(*be_, nullptr, ws.partial.data(), table_.p[0], a_->ids.data(), BT, C, vocab_start_, vocab_local_);
      split_.reduce_to(ws.partial.data(), a_->x0.data(), TlC);
    } else {
      vocab_parallel_lookup(*be_, tp_, a_->x0.data(), table_.p[0], a_->ids.data(), BT, C, vocab_start_, vocab_local_);
    }
    release(0);
  } else {
    be_->copy(a_->x0.data(), input, TlC);  // what the previous stage sent
  }
  for (int i = 0; i < n; ++i) {
    const T* x = i == 0 ? a_->x0.data() : a_->x3.data() + static_cast<size_t>(i - 1) * TlC;
    acquire(l0 + i + 1, i + 1 < n ? l0 + i + 2 : (stage_.last ? final_unit : -1));
    layer_forward(l0 + i, i, recompute_ ? 0 : i, x, B, Tn);
    release(l0 + i + 1);
  }
  if (!stage_.last) return acc_t<T>(0);
  const T* last = n > 0 ? a_->final_in.data() : a_->x0.data();
  acquire(final_unit);
  const T* final_norm = table_.p[static_cast<size_t>(final_unit)];
  be_->rmsnorm_forward(a_->xf.data(), a_->rstdf.data(), last, final_norm, static_cast<int>(Tl), C);
  be_->matmul_forward(a_->logits.data(), split_.gather(a_->xf.data(), ws.gathered, TlC), final_norm + C, nullptr,
                     static_cast<int>(BT), C, V);
  release(final_unit);
  if (!tp_ || tp_->size() == 1) {
    return be_->cross_entropy(a_->logits.data(), targets, static_cast<int>(BT), V);
  }
  return be_->vocab_parallel_cross_entropy(tp_, a_->logits.data(), targets, BT, vocab_local_, vocab_start_);
}

template <class T>
acc_t<T> LlamaModel<T>::loss(const int* tokens, const int* targets, int B, int Tn) {
  return stage_forward(0, tokens, targets, nullptr, B, Tn);
}

template <class T>
size_t LlamaModel<T>::activation_bytes() const {
  size_t n = 0;
  for (const Acts* a : acts_.all()) {
    for (const Buffer<T>* v : {&a->x0, &a->xn1, &a->q, &a->k, &a->v, &a->att, &a->atty, &a->x2, &a->xn2, &a->gate, &a->up,
                               &a->h, &a->x3, &a->final_in, &a->xf, &a->logits}) {
      n += v->size() * sizeof(T);
    }
    for (const auto* v : {&a->rstd1, &a->rstd2, &a->rstdf, &a->lse}) n += v->size() * sizeof(acc_t<T>);
    n += a->ids.size() * sizeof(int);
  }
  return n;
}

template <class T>
acc_t<T> LlamaModel<T>::forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate) {
  if (!accumulate && !table_.provider) be_->zero(grads.data(), grads.size());
  return zp::forward_backward(*this, tokens, targets, B, Tn);
}

template <class T>
void LlamaModel<T>::stage_backward(int k, const T* doutput, int B, int Tn) {
  select(k);
  const int C = c_.channels, L = c_.layers, NH = heads_local_, KVH = kv_local_, hs = c_.head_dim, F = ffn_local_, V = vocab_local_;
  const int n = stage_.layers, l0 = stage_.first_layer;
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT), TlC = Tl * C;
  const size_t QD = static_cast<size_t>(NH) * hs, KD = static_cast<size_t>(KVH) * hs;
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  const acc_t<T> base = static_cast<acc_t<T>>(c_.rope_base);
  // Backward's activation gradients: one layer's worth, workspace (Tl token
  // rows on the residual stream, all BT inside the tensor-parallel regions).
  auto work = [this](size_t count) { return make_buffer<T>(tracker_, Component::Workspace, count); };
  auto written = [this](size_t count) { return make_output_buffer<T>(tracker_, Component::Workspace, count); };
  // The residual stream's gradient: zeroed on the last stage, where the
  // final norm's backward adds into it; elsewhere the next stage's gradient
  // is copied in.
  Buffer<T> dx = stage_.last ? work(TlC) : written(TlC), gathered = work(0), reduced = work(0);
  // A norm's weight gradient from this rank's tokens: summed over the
  // tensor-parallel group under sequence parallelism (increments only).
  Buffer<T> dnorm = work(split_.split() ? static_cast<size_t>(C) : 0);
  auto norm_backward = [&](T* dinp, T* dweight, const T* dout, const T* inp, const T* weight, const acc_t<T>* rstd) {
    if (!split_.split()) {
      be_->rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, static_cast<int>(Tl), C);
      return;
    }
    be_->zero(dnorm.data(), dnorm.size());
    be_->rmsnorm_backward(dinp, dnorm.data(), dout, inp, weight, rstd, static_cast<int>(Tl), C);
    split_.sum_replicated(dnorm.data(), dnorm.size());
    be_->accumulate(dweight, dnorm.data(), static_cast<size_t>(C));
  };
  const int final_unit = L + 1;
  if (stage_.last) {
    Buffer<T> dxf = written(BT * C);  // the head's product writes it (overwrite)
    acquire(final_unit, n > 0 ? l0 + n : -1);
    open_gradients(final_unit);
    const T* final_norm = table_.p[static_cast<size_t>(final_unit)];
    T* gfinal = table_.g[static_cast<size_t>(final_unit)];
    be_->matmul_backward(dxf.data(), gfinal + C, nullptr, a_->logits.data(), split_.gather(a_->xf.data(), gathered, TlC),
                        final_norm + C, static_cast<int>(BT), C, V, /*overwrite_dinp=*/true);
    const T* last = n > 0 ? a_->final_in.data() : a_->x0.data();
    const T* dxf_mine = split_.reduce(dxf.data(), reduced, TlC);  // each rank's vocabulary rows contribute
    norm_backward(dx.data(), gfinal, dxf_mine, last, final_norm, a_->rstdf.data());
    finish_gradients(final_unit);
    release(final_unit);
  } else {
    be_->copy(dx.data(), doutput, TlC);
  }
  // The residual stream's gradient stays in dx throughout: a residual add's
  // backward hands the same gradient to both branches, so each branch reads
  // dx and the norms' input gradients are added into it in place (no copies,
  // nothing to zero), as autograd passes an add's gradient through.
  // Each layer's first product into an input gradient and SwiGLU write it
  // (overwrite: one producer), so those buffers are taken unfilled; q, k
  // and v's gradients, which the attention backward adds into, are zeroed
  // for each layer below.
  Buffer<T> dh = written(BT * F), dgate = written(BT * F), dup = written(BT * F), dxn2 = written(BT * C),
            datty = written(BT * QD), dq = written(BT * QD), dk = written(BT * KD), dv = written(BT * KD),
            dxn1 = written(BT * C);
  for (int i = n - 1; i >= 0; --i) {
    const int l = l0 + i;
    const T* x = i == 0 ? a_->x0.data() : a_->x3.data() + static_cast<size_t>(i - 1) * TlC;
    acquire(l + 1, i >= 1 ? l : -1);
    open_gradients(l + 1);
    // Full recompute: rebuild this layer's activations from its saved input.
    if (recompute_) layer_forward(l, i, 0, x, B, Tn, /*rebuild=*/true);
    const size_t s = recompute_ ? 0 : static_cast<size_t>(i);
    // Selective recompute: rebuild this layer's softmax output from its saved
    // q, k (post-rotary) and v; the attention output goes to scratch (datty,
    // which the output projection's gradient overwrites before it is read).
    if (recompute_scores()) {
      be_->gqa_attention_forward(datty.data(), A_->att.data(), L_->q.data() + s * BT * QD, L_->k.data() + s * BT * KD,
                                L_->v.data() + s * BT * KD, B, Tn, NH, KVH, hs);
    }
    // The materialised attention's backward adds into q, k and v's
    // gradients: three memsets a layer (the time model's zeroed gradient
    // buffers, costmodel/compute.cc); the flash kernels write them.
    if (!flash_) {
      for (auto* vec : {&dq, &dk, &dv}) be_->zero(vec->data(), vec->size());
    }
    // x3 = x2 + down(h): both get dx; the product's output gradient over
    // every token (gathered under sequence parallelism).
    be_->matmul_backward(dh.data(), gw(WDOWN, l), nullptr, split_.gather(dx.data(), gathered, TlC), L_->h.data() + s * BT * F,
                        w(WDOWN, l), static_cast<int>(BT), F, C, /*overwrite_dinp=*/true);
    be_->swiglu_backward(dgate.data(), dup.data(), dh.data(), L_->gate.data() + s * BT * F, L_->up.data() + s * BT * F, BT * F);
    const T* xn2 = split_.gather(L_->xn2.data() + s * TlC, gathered, TlC);
    be_->matmul_backward(dxn2.data(), gw(WGATE, l), nullptr, dgate.data(), xn2, w(WGATE, l), static_cast<int>(BT), C, F,
                         /*overwrite_dinp=*/true);
    be_->matmul_backward(dxn2.data(), gw(WUP, l), nullptr, dup.data(), xn2, w(WUP, l), static_cast<int>(BT), C, F);
    // Column-parallel: the input's gradient summed over ranks.
    const T* dxn2_mine = split_.reduce(dxn2.data(), reduced, TlC);
    // dx becomes x2's gradient.
    norm_backward(dx.data(), gw(MLP_NORM, l), dxn2_mine, L_->x2.data() + s * TlC, w(MLP_NORM, l), L_->rstd2.data() + s * Tl);
    // x2 = x + wo(atty): both get it.
    be_->matmul_backward(datty.data(), gw(WO, l), nullptr, split_.gather(dx.data(), gathered, TlC),
                        L_->atty.data() + s * BT * QD, w(WO, l), static_cast<int>(BT), static_cast<int>(QD), C,
                        /*overwrite_dinp=*/true);
    const T *qs = L_->q.data() + s * BT * QD, *ks = L_->k.data() + s * BT * KD, *vs = L_->v.data() + s * BT * KD;
    if (flash_) {
      be_->flash_attention_backward({dq.data(), QD}, {dk.data(), KD}, {dv.data(), KD}, {datty.data(), QD}, {qs, QD},
                                    {ks, KD}, {vs, KD}, {L_->atty.data() + s * BT * QD, QD},
                                    L_->lse.data() + s * static_cast<size_t>(B) * NH * Tn, B, Tn, NH, KVH, hs);
    } else {
      be_->gqa_attention_backward(dq.data(), dk.data(), dv.data(), datty.data(), qs, ks, vs,
                                 A_->att.data() + att_slot(s) * att_size, B, Tn, NH, KVH, hs);
    }
    be_->rope_backward(dq.data(), B, Tn, NH, hs, base);
    be_->rope_backward(dk.data(), B, Tn, KVH, hs, base);
    const T* xn1 = split_.gather(L_->xn1.data() + s * TlC, gathered, TlC);
    be_->matmul_backward(dxn1.data(), gw(WQ, l), nullptr, dq.data(), xn1, w(WQ, l), static_cast<int>(BT), C, static_cast<int>(QD),
                         /*overwrite_dinp=*/true);
    be_->matmul_backward(dxn1.data(), gw(WK, l), nullptr, dk.data(), xn1, w(WK, l), static_cast<int>(BT), C, static_cast<int>(KD));
    be_->matmul_backward(dxn1.data(), gw(WV, l), nullptr, dv.data(), xn1, w(WV, l), static_cast<int>(BT), C, static_cast<int>(KD));
    const T* dxn1_mine = split_.reduce(dxn1.data(), reduced, TlC);
    // dx becomes the layer input's gradient.
    norm_backward(dx.data(), gw(ATTN_NORM, l), dxn1_mine, x, w(ATTN_NORM, l), L_->rstd1.data() + s * Tl);
    finish_gradients(l + 1);
    release(l + 1);
  }
  if (stage_.first) {
    // Each rank's vocabulary rows take every token's gradient (gathered under sequence parallelism).
    open_gradients(0);
    be_->embedding_backward(table_.g[0], split_.gather(dx.data(), gathered, TlC), a_->ids.data(), BT, C, vocab_start_,
                    vocab_local_);
    finish_gradients(0);
  } else {
    dinput_->swap(dx);  // for the previous stage
  }
}

template class LlamaModel<float>;
template class LlamaModel<double>;
template class LlamaModel<bf16>;

}  // namespace zp
