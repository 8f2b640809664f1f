#include "executor/gpt_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <type_traits>

#include "executor/init_normal.h"
#include "executor/model_step.h"
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


template <class T>
GptModel<T>::GptModel(const GptConfig& c, uint64_t seed, TrackingAllocator* tracker, PipelineStage stage,
                      TensorParallel tp)
    : params(make_buffer<T>(tracker, Component::Weights)),
      grads(make_buffer<T>(tracker, Component::Gradients)),
      c_(c),
      tracker_(tracker),
      be_(make_backend<T>(tracker)) {
  const size_t V = c.vocab, S = c.max_seq, L = c.layers, C = c.channels;
  if (stage.layers < 0) stage.layers = c.layers - stage.first_layer;
  stage_ = stage;
  tp_ = tp.comm;
  split_ = TokenSplit<T>{tp.comm, tp.sequence_parallel};
  tp_size_ = tp.comm ? tp.comm->size() : 1;
  tp_rank_ = tp.comm ? tp.comm->rank() : 0;
  if (c.heads % tp_size_) throw std::runtime_error("tensor parallel " + std::to_string(tp_size_) + ": must divide the heads");
  const size_t t = static_cast<size_t>(tp_size_), r = static_cast<size_t>(tp_rank_);
  const VocabShard vocab = vocab_shard(c.vocab, tp_size_, tp_rank_);
  const size_t Cl = C / t, Fl = 4 * C / t, Vl = static_cast<size_t>(vocab.rows), Vr = static_cast<size_t>(vocab.real);
  channels_local_ = static_cast<int>(Cl);
  heads_local_ = c.heads / tp_size_;
  ffn_local_ = static_cast<int>(Fl);
  vocab_rows_ = vocab.rows;
  vocab_local_ = vocab.real;
  vocab_start_ = vocab.start;
  // One layer's tensors, whole and on this rank (column-parallel QKV and FC
  // keep 1/t of their output rows, row-parallel projections 1/t of their input columns).
  const std::array<size_t, kLayerTensors> whole_sizes = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, C * 4 * C, C};
  const std::array<size_t, kLayerTensors> layer_sizes = {C, C, 3 * Cl * C, 3 * Cl, C * Cl, C, C, C, Fl * C, Fl, C * Fl, C};
  std::array<size_t, kLayerTensors + 1> whole_off{};
  for (int i = 0; i < kLayerTensors; ++i) {
    layer_off_[i + 1] = layer_off_[i] + layer_sizes[i];
    whole_off[i + 1] = whole_off[i] + whole_sizes[i];
  }
  // The whole model's layout (units: the embedding wte + wpe, the layers, the
  // final norm), initialised as GPT-2 is: N(0, 0.02) weights, zero biases,
  // unit LayerNorm gains, each weight's value drawn by its index in this
  // layout (executor/init_normal.h), so every stage and tensor-parallel rank
  // starts from the one model's values.
  std::vector<size_t> whole(L + 3, 0);
  whole[1] = V * C + S * C;
  for (size_t l = 0; l < L; ++l) whole[l + 2] = whole[l + 1] + whole_off[kLayerTensors];
  whole[L + 2] = whole[L + 1] + 2 * C;
  std::vector<T> init(whole[L + 2], T(0));
  constexpr double kInitStddev = 0.02;
  fill_normal(init.data(), whole[1], kInitStddev, seed, 0);  // wte, then wpe
  for (LayerTensor lt : {QKVW, ATTPROJW, FCW, FCPROJW}) {
    for (size_t l = 0; l < L; ++l) {
      const size_t at = whole[l + 1] + whole_off[lt];
      fill_normal(init.data() + at, whole_sizes[lt], kInitStddev, seed, at);
    }
  }
  for (LayerTensor lt : {LN1W, LN2W}) {
    for (size_t l = 0; l < L; ++l) std::fill_n(init.data() + whole[l + 1] + whole_off[lt], C, T(1));
  }
  std::fill_n(init.data() + whole[L + 1], C, T(1));
  // This stage's units, in order: what it holds and where.
  table_.offset.assign(L + 3, 0);
  table_.size.assign(L + 3, 0);
  size_t held = 0;
  auto hold = [&](size_t u, size_t n) {
    table_.offset[u] = held;
    table_.size[u] = n;
    held += n;
  };
  if (stage.first) hold(0, Vl * C + S * C);
  for (int l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) hold(static_cast<size_t>(l) + 1, layer_off_[kLayerTensors]);
  if (stage.last) hold(L + 1, 2 * C);
  if (stage.last && !stage.first) hold(L + 2, Vl * C);  // the tied output layer's copy
  params.assign(held, T(0));
  grads.assign(held, T(0));
  std::vector<T> local(held, T(0));  // built on the host, then copied to the device
  // This rank's share of each tensor: rows [first, first + count) of every
  // `blocks` consecutive groups of `rows` rows of `width` columns, or columns
  // [first, first + count) of each row.
  auto rows_of = [](const T* from, T* to, size_t blocks, size_t rows, size_t width, size_t first, size_t count) {
    for (size_t b = 0; b < blocks; ++b) std::copy_n(from + (b * rows + first) * width, count * width, to + b * count * width);
  };
  auto cols_of = [](const T* from, T* to, size_t rows, size_t width, size_t first, size_t count) {
    for (size_t i = 0; i < rows; ++i) std::copy_n(from + i * width + first, count, to + i * count);
  };
  if (stage.first) {
    rows_of(init.data(), local.data(), 1, V, C, r * Vl, Vr);                             // wte rows (then padding)
    std::copy_n(init.data() + V * C, S * C, local.data() + table_.offset[0] + Vl * C);  // wpe
  }
  for (int l = stage.first_layer; l < stage.first_layer + stage.layers; ++l) {
    const T* g = init.data() + whole[static_cast<size_t>(l) + 1];
    T* o = local.data() + table_.offset[static_cast<size_t>(l) + 1];
    for (LayerTensor lt : {LN1W, LN1B, ATTPROJB, LN2W, LN2B, FCPROJB}) std::copy_n(g + whole_off[lt], C, o + layer_off_[lt]);
    rows_of(g + whole_off[QKVW], o + layer_off_[QKVW], 3, C, C, r * Cl, Cl);  // q, k, v rows of this rank's heads
    rows_of(g + whole_off[QKVB], o + layer_off_[QKVB], 3, C, 1, r * Cl, Cl);
    cols_of(g + whole_off[ATTPROJW], o + layer_off_[ATTPROJW], C, C, r * Cl, Cl);
    rows_of(g + whole_off[FCW], o + layer_off_[FCW], 1, 4 * C, C, r * Fl, Fl);
    rows_of(g + whole_off[FCB], o + layer_off_[FCB], 1, 4 * C, 1, r * Fl, Fl);
    cols_of(g + whole_off[FCPROJW], o + layer_off_[FCPROJW], C, 4 * C, r * Fl, Fl);
  }
  if (stage.last) std::copy_n(init.data() + whole[L + 1], 2 * C, local.data() + table_.offset[L + 1]);
  if (table_.size[L + 2]) rows_of(init.data(), local.data() + table_.offset[L + 2], 1, V, C, r * Vl, Vr);
  copy_in(params, local.data(), held);
  table_.p.assign(L + 3, nullptr);
  table_.g.assign(L + 3, nullptr);
  *dinput_ = make_buffer<T>(tracker, Component::Workspace);
}

template <class T>
T* GptModel<T>::add_bias_after_reduce(T* partial, const T* bias, size_t rows, int C) {
  T* out = split_.reduce(partial, acts_.shared->reduced, rows * static_cast<size_t>(C));
  be_->add_bias(out, bias, rows, C);
  return out;
}

template <class T>
void GptModel<T>::select(int k) {
  acts_.select(k, recompute_, selective_);
  a_ = acts_.current;
  L_ = acts_.layer;
  A_ = acts_.scores;
}

template <class T>
int GptModel<T>::tied_embedding_unit() const {
  if (stage_.first == stage_.last) return -1;
  return stage_.first ? 0 : c_.layers + 2;
}

template <class T>
void GptModel<T>::layer_forward(int l, int local, int slot, const T* residual, int B, int Tn, bool rebuild) {
  // C: the model width; Cl, NHl, Fl: this tensor-parallel rank's attention
  // channels, heads and FFN width (all of them with one rank). BT tokens go
  // through the tensor-parallel products; Tl of them (BT / t under sequence
  // parallelism) through the norms and residuals.
  const int C = c_.channels, Cl = channels_local_, NHl = heads_local_, Fl = ffn_local_;
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT);
  const size_t o = slot * Tl * C, ol = slot * BT * static_cast<size_t>(Cl), of = slot * BT * static_cast<size_t>(Fl);
  const size_t att_size = static_cast<size_t>(B) * NHl * Tn * Tn;
  Acts& ws = *acts_.shared;
  T* ln1 = L_->ln1.data() + o;
  be_->layernorm_forward(ln1, L_->ln1_mean.data() + slot * Tl, L_->ln1_rstd.data() + slot * Tl, residual, w(LN1W, l),
                        w(LN1B, l), static_cast<int>(Tl), C);
  T* qkv = L_->qkv.data() + 3 * ol;
  be_->matmul_forward(qkv, split_.gather(ln1, ws.gathered, Tl * C), w(QKVW, l), w(QKVB, l), static_cast<int>(BT), C, 3 * Cl);
  T* atty = L_->atty.data() + ol;
  if (flash_) {
    const size_t ld = 3 * static_cast<size_t>(Cl);
    be_->flash_attention_forward({atty, static_cast<size_t>(Cl)}, L_->lse.data() + slot * static_cast<size_t>(B) * NHl * Tn,
                                 {qkv, ld}, {qkv + Cl, ld}, {qkv + 2 * Cl, ld}, B, Tn, NHl, NHl, Cl / NHl);
  } else {
    be_->attention_forward(atty, A_->att.data() + att_slot(static_cast<size_t>(slot)) * att_size, qkv, B, Tn, Cl, NHl);
  }
  // Row-parallel: the partial products are summed over the ranks, then the bias.
  const bool split = tp_size_ > 1;
  be_->matmul_forward(ws.proj.data(), atty, w(ATTPROJW, l), split ? nullptr : w(ATTPROJB, l), static_cast<int>(BT), Cl, C);
  T* attproj = split ? add_bias_after_reduce(ws.proj.data(), w(ATTPROJB, l), Tl, C) : ws.proj.data();
  T* res2 = L_->residual2.data() + o;
  be_->residual_forward(res2, residual, attproj, Tl * C);
  T* ln2 = L_->ln2.data() + o;
  be_->layernorm_forward(ln2, L_->ln2_mean.data() + slot * Tl, L_->ln2_rstd.data() + slot * Tl, res2, w(LN2W, l),
                        w(LN2B, l), static_cast<int>(Tl), C);
  T* fch = L_->fch.data() + of;
  be_->matmul_forward(fch, split_.gather(ln2, ws.gathered, Tl * C), w(FCW, l), w(FCB, l), static_cast<int>(BT), C, Fl);
  T* gelu = L_->fch_gelu.data() + of;
  be_->gelu_forward(gelu, fch, BT * static_cast<size_t>(Fl));
  be_->matmul_forward(ws.proj.data(), gelu, w(FCPROJW, l), split ? nullptr : w(FCPROJB, l), static_cast<int>(BT), Fl, C);
  T* fcproj = split ? add_bias_after_reduce(ws.proj.data(), w(FCPROJB, l), Tl, C) : ws.proj.data();
  if (rebuild) return;
  // The layer's output is kept for every layer: it is the next layer's input
  // (the checkpoint full recompute keeps). The last layer of a stage that is
  // not the last writes the stage's output, which is only sent on (and freed
  // then, as Megatron-LM's deallocate_output_tensor does).
  T* out = a_->residual3.data() + static_cast<size_t>(local) * Tl * C;
  if (local + 1 == stage_.layers && !stage_.last) {
    if (a_->out.empty()) ensure_output_buffer(a_->out, tracker_, Component::Workspace, Tl * C);
    out = a_->out.data();
  } else if (local + 1 == stage_.layers) {
    out = a_->final_in.data();  // the final norm's input, a logits-side row of the cost model
  }
  be_->residual_forward(out, res2, fcproj, Tl * C);
}

template <class T>
acc_t<T> GptModel<T>::stage_forward(int k, const int* tokens, const int* targets, const T* input, int B, int Tn) {
  select(k);
  const int C = c_.channels, L = c_.layers, NH = heads_local_, V = vocab_local_, n = stage_.layers;
  const size_t Cl = static_cast<size_t>(channels_local_), Fl = static_cast<size_t>(ffn_local_);
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT);
  if (split_.split() && BT % static_cast<size_t>(tp_size_) != 0) {
    throw std::runtime_error("sequence parallelism: micro-batch x sequence must divide by the tensor-parallel size");
  }
  // With full recompute only one layer's activations exist at a time: the
  // recompute workspace; every layer's input stays as its checkpoint.
  const size_t slots = recompute_ ? 1 : static_cast<size_t>(n);
  const Component layer_tag = recompute_ ? Component::RecomputeWorkspace : Component::Activations;
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  TrackingAllocator* t = tracker_;
  if (stage_.first) {
    ensure_output_buffer(a_->ids, t, Component::Activations, BT);
    copy_in(a_->ids, tokens, BT);
  }
  // The stage's input: the embedding's output, or what the previous stage
  // sent. Tensors outside the tensor-parallel regions hold Tl token rows.
  ensure_output_buffer(a_->encoded, t, Component::Activations, Tl * C);
  ensure_output_buffer(L_->ln1, t, layer_tag, slots * Tl * C);
  ensure_output_buffer(L_->ln1_mean, t, layer_tag, slots * Tl);
  ensure_output_buffer(L_->ln1_rstd, t, layer_tag, slots * Tl);
  ensure_output_buffer(L_->qkv, t, layer_tag, slots * BT * 3 * Cl);
  // Under selective recompute the softmax output of one layer at a time
  // (rebuilt in backward); flash attention keeps each layer's log-sum-exp.
  if (flash_) {
    ensure_output_buffer(L_->lse, t, layer_tag, slots * static_cast<size_t>(B) * NH * Tn);
  } else if (selective_ && !recompute_) {
    ensure_output_buffer(A_->att, t, Component::RecomputeWorkspace, att_size);
  } else {
    ensure_output_buffer(A_->att, t, layer_tag, slots * att_size);
  }
  ensure_output_buffer(L_->atty, t, layer_tag, slots * BT * Cl);
  ensure_output_buffer(L_->residual2, t, layer_tag, slots * Tl * C);
  ensure_output_buffer(L_->ln2, t, layer_tag, slots * Tl * C);
  ensure_output_buffer(L_->ln2_mean, t, layer_tag, slots * Tl);
  ensure_output_buffer(L_->ln2_rstd, t, layer_tag, slots * Tl);
  ensure_output_buffer(L_->fch, t, layer_tag, slots * BT * Fl);
  ensure_output_buffer(L_->fch_gelu, t, layer_tag, slots * BT * Fl);
  // Layer outputs: residual3[l] is layer l+1's input (its checkpoint under
  // full recompute); the last stage's last layer writes the final norm's
  // input, which the cost model counts with the logits.
  ensure_output_buffer(a_->residual3, t, Component::Activations, static_cast<size_t>(std::max(n - 1, 0)) * Tl * C);
  if (stage_.last) {
    ensure_output_buffer(a_->final_in, t, Component::Logits, n > 0 ? Tl * C : 0);
    ensure_output_buffer(a_->lnf, t, Component::Logits, Tl * C);
    ensure_output_buffer(a_->lnf_mean, t, Component::Logits, Tl);
    ensure_output_buffer(a_->lnf_rstd, t, Component::Logits, Tl);
    ensure_output_buffer(a_->logits, t, Component::Logits, BT * static_cast<size_t>(vocab_rows_));  // the padded columns unused
  }
  Acts& ws = *acts_.shared;
  ensure_output_buffer(ws.proj, t, Component::Workspace, BT * C);
  ensure_output_buffer(ws.gathered, t, Component::Workspace, split_.split() ? BT * C : 0);
  ensure_output_buffer(ws.reduced, t, Component::Workspace, split_.split() ? Tl * C : 0);

  // Each unit's parameters are acquired for the ops that use them and released after.
  const int final_unit = L + 1, l0 = stage_.first_layer;
  if (stage_.first) {
    acquire(0, n > 0 ? l0 + 1 : final_unit);
    // The token rows (vocabulary-parallel: each rank's rows, summed over the
    // ranks; reduce-scattered to this rank's tokens under sequence
    // parallelism), then the replicated positions.
    if (split_.split()) {
      vocab_parallel_lookup(*be_, nullptr, ws.gathered.data(), table_.p[0], a_->ids.data(), BT, C, vocab_start_, vocab_local_);
      split_.reduce_to(ws.gathered.data(), a_->encoded.data(), Tl * C);
    } else {
      vocab_parallel_lookup(*be_, tp_, a_->encoded.data(), table_.p[0], a_->ids.data(), BT, C, vocab_start_, vocab_local_);
    }
    const size_t first = split_.first(BT);
    be_->add_positions(a_->encoded.data(), table_.p[0] + wpe_offset(), Tl, C, first, Tn);
    release(0);
  } else {
    be_->copy(a_->encoded.data(), input, Tl * C);
  }
  for (int i = 0; i < n; ++i) {
    const T* residual = i == 0 ? a_->encoded.data() : a_->residual3.data() + static_cast<size_t>(i - 1) * Tl * C;
    acquire(l0 + i + 1, i + 1 < n ? l0 + i + 2 : (stage_.last ? final_unit : -1));
    layer_forward(l0 + i, i, recompute_ ? 0 : i, residual, B, Tn);
    release(l0 + i + 1);
  }
  if (!stage_.last) return acc_t<T>(0);
  const T* last = n > 0 ? a_->final_in.data() : a_->encoded.data();
  acquire(final_unit, head_unit());
  const T* lnf = table_.p[static_cast<size_t>(final_unit)];
  be_->layernorm_forward(a_->lnf.data(), a_->lnf_mean.data(), a_->lnf_rstd.data(), last, lnf, lnf + C, static_cast<int>(Tl), C);
  release(final_unit);
  acquire(head_unit());  // the tied output layer, over every token
  be_->matmul_forward(a_->logits.data(), split_.gather(a_->lnf.data(), ws.gathered, Tl * C),
                     table_.p[static_cast<size_t>(head_unit())], nullptr, static_cast<int>(BT), C, V);
  release(head_unit());
  // The gradient of the mean loss overwrites the logits (each row is read before it is written).
  if (tp_size_ == 1) return be_->cross_entropy(a_->logits.data(), targets, static_cast<int>(BT), V);
  return be_->vocab_parallel_cross_entropy(tp_, a_->logits.data(), targets, BT, vocab_local_, vocab_start_);
}

template <class T>
const T* GptModel<T>::stage_output(int k) const {
  const Acts& a = acts_.of(k);
  return stage_.layers > 0 ? a.out.data() : a.encoded.data();
}

template <class T>
acc_t<T> GptModel<T>::loss(const int* tokens, const int* targets, int B, int Tn) {
  return stage_forward(0, tokens, targets, nullptr, B, Tn);
}

template <class T>
size_t GptModel<T>::activation_bytes() const {
  size_t n = 0;
  for (const Acts* a : acts_.all()) {
    for (const Buffer<T>* v : {&a->encoded, &a->ln1, &a->qkv, &a->atty, &a->att, &a->residual2, &a->ln2, &a->fch,
                               &a->fch_gelu, &a->residual3, &a->final_in, &a->lnf, &a->logits}) {
      n += v->size() * sizeof(T);
    }
    for (const auto* v : {&a->ln1_mean, &a->ln1_rstd, &a->ln2_mean, &a->ln2_rstd, &a->lnf_mean, &a->lnf_rstd, &a->lse}) {
      n += v->size() * sizeof(acc_t<T>);
    }
    n += a->ids.size() * sizeof(int);
  }
  return n;
}

template <class T>
acc_t<T> GptModel<T>::forward_backward(const int* tokens, const int* targets, int B, int Tn, bool accumulate) {
  if (!accumulate && !table_.provider) be_->zero(grads.data(), grads.size());
  return zp::forward_backward(*this, tokens, targets, B, Tn);
}

template <class T>
void GptModel<T>::stage_backward(int k, const T* doutput, int B, int Tn) {
  select(k);
  const int C = c_.channels, L = c_.layers, NH = heads_local_, V = vocab_local_, n = stage_.layers, l0 = stage_.first_layer;
  const int Cl = channels_local_, Fl = ffn_local_;
  const size_t BT = static_cast<size_t>(B) * Tn, Tl = split_.local(BT), TlC = Tl * static_cast<size_t>(C);
  // Backward's activation gradients: one layer's worth, workspace. Those of
  // the residual stream hold Tl token rows, those inside the tensor-parallel
  // regions all BT.
  auto work = [this](size_t count) { return make_buffer<T>(tracker_, Component::Workspace, count); };
  auto written = [this](size_t count) { return make_output_buffer<T>(tracker_, Component::Workspace, count); };
  // The residual stream's gradient: zeroed on the last stage, where the
  // final norm's backward adds into it; elsewhere the next stage's gradient
  // is copied in.
  Buffer<T> dresidual = stage_.last ? work(TlC) : written(TlC), gathered = work(0), reduced = work(0);
  // A norm's weight and bias gradients from this rank's tokens: summed over
  // the tensor-parallel group under sequence parallelism (increments only, so
  // gradient accumulation over micro-batches stays right).
  Buffer<T> dnorm = work(split_.split() ? 2 * static_cast<size_t>(C) : 0);
  auto norm_backward = [&](T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                           const acc_t<T>* mean, const acc_t<T>* rstd) {
    if (!split_.split()) {
      be_->layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, static_cast<int>(Tl), C);
      return;
    }
    be_->zero(dnorm.data(), dnorm.size());
    be_->layernorm_backward(dinp, dnorm.data(), dnorm.data() + C, dout, inp, weight, mean, rstd, static_cast<int>(Tl), C);
    split_.sum_replicated(dnorm.data(), dnorm.size());
    be_->accumulate(dweight, dnorm.data(), static_cast<size_t>(C));
    be_->accumulate(dbias, dnorm.data() + C, static_cast<size_t>(C));
  };
  const int final_unit = L + 1;
  // The first stage's embedding gradients come from the token lookup at the
  // end (and, in one stage, from the tied output layer first): its gradient
  // buffer stays open throughout.
  if (stage_.first) open_gradients(0);
  if (stage_.last) {
    Buffer<T> dlnf = written(BT * C);  // the head's product writes it (overwrite)
    const int head = head_unit();
    if (head != 0) open_gradients(head);
    acquire(head, final_unit);
    // The head's input over every token (gathered again under sequence parallelism).
    be_->matmul_backward(dlnf.data(), table_.g[static_cast<size_t>(head)], nullptr, a_->logits.data(),
                        split_.gather(a_->lnf.data(), gathered, TlC), table_.p[static_cast<size_t>(head)],
                        static_cast<int>(BT), C, V, /*overwrite_dinp=*/true);
    const T* dlnf_mine = split_.reduce(dlnf.data(), reduced, TlC);  // each rank's vocabulary rows contribute
    release(head);
    if (head != 0) finish_gradients(head);
    const T* last = n > 0 ? a_->final_in.data() : a_->encoded.data();
    acquire(final_unit, n > 0 ? l0 + n : -1);
    open_gradients(final_unit);
    T* glnf = table_.g[static_cast<size_t>(final_unit)];
    norm_backward(dresidual.data(), glnf, glnf + C, dlnf_mine, last, table_.p[static_cast<size_t>(final_unit)],
                  a_->lnf_mean.data(), a_->lnf_rstd.data());
    finish_gradients(final_unit);
    release(final_unit);
  } else {
    be_->copy(dresidual.data(), doutput, TlC);
  }
  const size_t att_size = static_cast<size_t>(B) * NH * Tn * Tn;
  const size_t BTl = BT * static_cast<size_t>(Cl), BTf = BT * static_cast<size_t>(Fl);
  // The residual stream's gradient stays in dresidual throughout: a residual
  // add's backward hands the same gradient to both branches, so each branch
  // reads dresidual and the norms' input gradients are added into it in
  // place (no copies, nothing to zero), as autograd passes an add's gradient
  // through.
  // Each layer's products and GeLU write their input gradients (overwrite:
  // each has one producer), so those buffers are taken unfilled; q, k and
  // v's gradient, which the attention backward adds into, is zeroed for each
  // layer below.
  Buffer<T> dgelu = written(BTf), dfch = written(BTf), dln2 = written(BT * C), datty = written(BTl),
            dqkv = written(3 * BTl), dln1 = written(BT * C);
  for (int i = n - 1; i >= 0; --i) {
    const int l = l0 + i;
    const T* residual = i == 0 ? a_->encoded.data() : a_->residual3.data() + static_cast<size_t>(i - 1) * TlC;
    const size_t slot = recompute_ ? 0 : static_cast<size_t>(i);
    acquire(l + 1, i >= 1 ? l : -1);
    open_gradients(l + 1);
    // Full recompute: rebuild this layer's activations from its saved input.
    if (recompute_) layer_forward(l, i, 0, residual, B, Tn, /*rebuild=*/true);
    const size_t o = slot * TlC, ol = slot * BTl, of = slot * BTf;
    // Selective recompute: rebuild this layer's softmax output from its saved q, k
    // (the attention output goes to a scratch buffer: the saved one is the same).
    if (recompute_scores()) {
      be_->attention_forward(acts_.shared->proj.data(), A_->att.data(), L_->qkv.data() + 3 * ol, B,
                            Tn, Cl, NH);
    }
    // The materialised attention's backward adds into q, k and v's gradient:
    // one memset a layer (the time model's zeroed gradient buffers,
    // costmodel/compute.cc); the flash kernels write it.
    if (!flash_) be_->zero(dqkv.data(), dqkv.size());
    // residual3 = residual2 + fcproj: both get dresidual. The row-parallel
    // product's output gradient over every token (gathered under sequence
    // parallelism; its bias gradient is then the sum over all tokens on every rank).
    be_->matmul_backward(dgelu.data(), gw(FCPROJW, l), gw(FCPROJB, l), split_.gather(dresidual.data(), gathered, TlC),
                        L_->fch_gelu.data() + of, w(FCPROJW, l), static_cast<int>(BT), Fl, C, /*overwrite_dinp=*/true);
    be_->gelu_backward(dfch.data(), L_->fch.data() + of, dgelu.data(), BTf);
    const T* ln2_all = split_.gather(L_->ln2.data() + o, gathered, TlC);
    be_->matmul_backward(dln2.data(), gw(FCW, l), gw(FCB, l), dfch.data(), ln2_all, w(FCW, l), static_cast<int>(BT), C, Fl,
                         /*overwrite_dinp=*/true);
    // Column-parallel: the input's gradient is a sum over ranks.
    const T* dln2_mine = split_.reduce(dln2.data(), reduced, TlC);
    // dresidual becomes residual2's gradient.
    norm_backward(dresidual.data(), gw(LN2W, l), gw(LN2B, l), dln2_mine, L_->residual2.data() + o, w(LN2W, l),
                  L_->ln2_mean.data() + slot * Tl, L_->ln2_rstd.data() + slot * Tl);
    // residual2 = residual + attproj: both get it.
    be_->matmul_backward(datty.data(), gw(ATTPROJW, l), gw(ATTPROJB, l), split_.gather(dresidual.data(), gathered, TlC),
                        L_->atty.data() + ol, w(ATTPROJW, l), static_cast<int>(BT), Cl, C, /*overwrite_dinp=*/true);
    if (flash_) {
      const size_t ld = 3 * static_cast<size_t>(Cl), cl = static_cast<size_t>(Cl);
      const T* qkv = L_->qkv.data() + 3 * ol;
      T* dx = dqkv.data();
      be_->flash_attention_backward({dx, ld}, {dx + Cl, ld}, {dx + 2 * Cl, ld}, {datty.data(), cl}, {qkv, ld},
                                    {qkv + Cl, ld}, {qkv + 2 * Cl, ld}, {L_->atty.data() + ol, cl},
                                    L_->lse.data() + slot * static_cast<size_t>(B) * NH * Tn, B, Tn, NH, NH, Cl / NH);
    } else {
      be_->attention_backward(dqkv.data(), datty.data(), L_->qkv.data() + 3 * ol,
                             A_->att.data() + att_slot(slot) * att_size, B, Tn, Cl, NH);
    }
    const T* ln1_all = split_.gather(L_->ln1.data() + o, gathered, TlC);
    be_->matmul_backward(dln1.data(), gw(QKVW, l), gw(QKVB, l), dqkv.data(), ln1_all, w(QKVW, l), static_cast<int>(BT), C,
                        3 * Cl, /*overwrite_dinp=*/true);
    const T* dln1_mine = split_.reduce(dln1.data(), reduced, TlC);
    // dresidual becomes the layer input's gradient.
    norm_backward(dresidual.data(), gw(LN1W, l), gw(LN1B, l), dln1_mine, residual, w(LN1W, l), L_->ln1_mean.data() + slot * Tl,
                  L_->ln1_rstd.data() + slot * Tl);
    finish_gradients(l + 1);
    release(l + 1);
  }
  if (stage_.first) {
    // Each rank's token rows take their gradients (every token's, gathered
    // under sequence parallelism); the positions are replicated, and with
    // every token's gradient every rank has their whole sum.
    const T* dall = split_.gather(dresidual.data(), gathered, TlC);
    be_->embedding_backward(table_.g[0], dall, a_->ids.data(), BT, C, vocab_start_, vocab_local_);
    be_->positions_backward(table_.g[0] + wpe_offset(), dall, BT, C, Tn);
    finish_gradients(0);
  } else {
    dinput_->swap(dresidual);  // for the previous stage
  }
}

template class GptModel<float>;
template class GptModel<double>;
template class GptModel<bf16>;

}  // namespace zp
