#include "costmodel/memory_model.h"

#include <algorithm>
#include <span>

#include "costmodel/activations.h"
#include "costmodel/model_states.h"
#include "costmodel/pipeline.h"
#include "costmodel/rank_params.h"

namespace zp {
namespace {

Dtype low_dtype(const Layout& l) {
  return l.precision == Precision::Fp32 ? Dtype::Fp32 : l.precision == Precision::Fp16 ? Dtype::Fp16 : Dtype::Bf16;
}

struct StageParams {
  uint64_t dense = 0, experts = 0;
  bool first = false, last = false;
  uint64_t layers = 0;
  bool holds_output = false;  // a forward's output over a backward (holds_output_over_backward)
  bool interleaved = false;   // the interleaved schedule's chunks
};

// Where `stage` sits in `l`'s pipeline: its ends and its schedule's buffers.
void place_in_pipeline(StageParams& s, const Layout& l, uint32_t stage) {
  s.first = stage == 0;
  s.last = stage + 1 == l.pp;
  s.holds_output = holds_output_over_backward(l, stage);
  s.interleaved = l.schedule == Schedule::Interleaved && l.vpp > 1;
}

StageParams stage_params(const RankParams& r, const Layout& l, uint64_t layers, uint32_t stage) {
  StageParams s;
  place_in_pipeline(s, l, stage);
  s.layers = layers;
  s.dense = layers * r.layer_dense;
  s.experts = layers * r.layer_experts;
  if (s.first) s.dense += r.embedding + r.position + r.embedding_norm;
  if (s.last) s.dense += r.final_norm + r.head;
  return s;
}

// Logits and loss buffers on the last stage, per framework (docs/memory-model.md):
//  zeroplan: the final norm's fp32 statistics and bf16 logits whose gradient
//            the fused cross-entropy writes in place;
//  deepspeed: Hugging Face causal-LM heads keep bf16 logits and an fp32 upcast;
//  megatron: the final-norm and output-layer inputs and fp32 logits,
//            4sbh(1 + V/h)/t (theoretical_memory_usage.py, pp = 1 term).
template <class Sink>
void emit_output_layer(const MemoryInputs& in, const ActivationShape& x, const RankParams& r, uint64_t mbs,
                       Sink& sink) {
  const uint64_t T = x.s * x.b, To = x.tokens_outside(), vt = r.padded_vocab / in.layout.tp;
  const Residence G = Residence::Gpu;
  sink.add(tensor_row(Component::Logits, G, x.dtype, "final_norm_input [To,h]", To, x.h, 1, 1, mbs));
  sink.add(tensor_row(Component::Logits, G, x.dtype, "head_input [To,h]", To, x.h, 1, 1, mbs));
  switch (in.layout.framework) {
    case Framework::Zeroplan:
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "final_norm_stats [To,n]", To, x.norm_stats, 1, 1, mbs));
      sink.add(tensor_row(Component::Logits, G, x.dtype, "logits [T,V/t]", T, vt, 1, 1, mbs));
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "loss [T]", T, 1, 1, 1, mbs));
      break;
    case Framework::DeepSpeed:
      sink.add(tensor_row(Component::Logits, G, x.dtype, "logits [T,V/t]", T, vt, 1, 1, mbs));
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "logits_fp32 [T,V/t]", T, vt, 1, 1, mbs));
      break;
    case Framework::Megatron:
      sink.add(tensor_row(Component::Logits, G, Dtype::Fp32, "logits_fp32 [T,V/t]", T, vt, 1, 1, mbs));
      break;
  }
}

bool shape_matches(const MemoryPrep& p, const ModelShape& m, const Layout& l) {
  return p.model == &m && p.tp == l.tp && p.ep == l.ep && p.micro_batch == l.micro_batch && p.seq_len == l.seq_len &&
         p.head_copy == (l.pp > 1) && p.sequence_parallel == l.sequence_parallel &&
         p.partition_activations == l.partition_activations && p.checkpoints_to_cpu == l.checkpoints_to_cpu &&
         p.recompute == l.recompute && p.attention == l.attention && p.dropout == l.dropout &&
         p.precision == l.precision && p.framework == l.framework;
}

// zeroplan's executor at its peak (docs/memory-model.md, "zeroplan's
// executor at its peak"): what it holds besides model states and
// activations depends on the moment, and the peak is the moment that holds
// the most:
//  - Loop: backward's layer loop (executor/gpt_model.cc, llama_model.cc
//    stage_backward), one layer's activation gradients live;
//  - Head: the last stage's output layer and final norm at the start of
//    backward, with the final norm's output gradient and the vocabulary-
//    sized units gathered and open;
//  - End: the step's end (executor/data_parallel.cc apply_gradients), with
//    ZeRO-1's bucket or ZeRO-2's all-gather buffers; a pipeline or
//    tensor-parallel rank has freed its activations by then.
enum class ExecutorMoment { Loop, Head, End };
template <class Sink>
uint64_t emit_executor_workspace(const ActivationShape& x, bool first, ExecutorMoment moment, Sink& sink);
template <class Sink>
void emit_stage_end_rows(const ActivationShape& x, bool first, bool last, Sink& sink);

// Rebuilds the shape part of `p` for (m, l): per-rank parameters and one
// layer's activation bytes per recompute mode, summed from the same row
// emitters the detailed table uses, so the aggregated hot path and the rows
// cannot disagree.
void prepare_shape(MemoryPrep& p, const ModelShape& m, const Layout& l) {
  p.model = &m;
  p.tp = l.tp;
  p.ep = l.ep;
  p.micro_batch = l.micro_batch;
  p.seq_len = l.seq_len;
  p.head_copy = l.pp > 1;
  p.sequence_parallel = l.sequence_parallel;
  p.partition_activations = l.partition_activations;
  p.checkpoints_to_cpu = l.checkpoints_to_cpu;
  p.recompute = l.recompute;
  p.attention = l.attention;
  p.dropout = l.dropout;
  p.precision = l.precision;
  p.framework = l.framework;
  p.r = rank_params(m, l);
  p.x = activation_shape(m, l);
  p.layer_full = layer_activation_bytes(p.x, Recompute::None);
  p.layer_saved = l.recompute == Recompute::Selective ? layer_activation_bytes(p.x, Recompute::Selective) : p.layer_full;
  p.checkpoint_residence = l.checkpoints_to_cpu ? Residence::Host : Residence::Gpu;
  p.layer_checkpoint = 0;
  if (l.recompute == Recompute::Full) {
    ByteCountSink ck;
    emit_layer_checkpoints(p.x, l.partition_activations, l.checkpoints_to_cpu, 1, ck);
    p.layer_checkpoint = ck.bytes();
  }
  if (l.framework == Framework::Zeroplan) {
    // Once per shape: the state side compares the moments for every state choice.
    // The step's end holds the rows every moment holds: the loop's without its own.
    for (int first = 0; first < 2; ++first) {
      for (ExecutorMoment moment : {ExecutorMoment::Loop, ExecutorMoment::Head}) {
        ByteCountSink all;
        const int m = static_cast<int>(moment);
        p.executor_own_workspace[first][m] = emit_executor_workspace(p.x, first == 1, moment, all);
        p.executor_workspace_bytes[first][m] = all.bytes();
      }
      const int loop = static_cast<int>(ExecutorMoment::Loop), end = static_cast<int>(ExecutorMoment::End);
      p.executor_workspace_bytes[first][end] = p.executor_workspace_bytes[first][loop] - p.executor_own_workspace[first][loop];
    }
    for (int first = 0; first < 2; ++first) {
      for (int last = 0; last < 2; ++last) {
        ByteCountSink rows;
        emit_stage_end_rows(p.x, first == 1, last == 1, rows);
        p.executor_stage_end_bytes[first][last] = rows.bytes();
      }
    }
  }
}

void prepare_rules(MemoryPrep& p, const Layout& l) {
  if (p.rules_framework != l.framework || p.rules_precision != l.precision || p.rules_optimizer != l.optimizer ||
      p.rules_fp32_accum != l.fp32_grad_accum) {
    for (auto& slot : p.rules_slots) slot.reset();
    ++p.rules_version;
    p.rules_framework = l.framework;
    p.rules_precision = l.precision;
    p.rules_optimizer = l.optimizer;
    p.rules_fp32_accum = l.fp32_grad_accum;
  }
  const int index = (l.zero_stage * 3 + static_cast<int>(l.offload_optimizer)) * 3 + static_cast<int>(l.offload_param);
  std::optional<MemoryPrep::RulesSlot>& slot = p.rules_slots[index];
  if (!slot) {
    const StateRules rules = state_rules(l);
    slot.emplace(MemoryPrep::RulesSlot{place_states(l, rules), state_bytes_by_residence(l, rules),
                                       optimizer_side_bytes_per_param(l)});
  }
  p.rules = &*slot;
}

void prepare(MemoryPrep& p, const MemoryInputs& in) {
  if (!shape_matches(p, in.model, in.layout)) {
    prepare_shape(p, in.model, in.layout);
    p.act_valid = false;
  }
  prepare_rules(p, in.layout);
}


// Saved activations of `copies` layers: every tensor as its own row when the
// sink keeps rows, one aggregated row otherwise.
template <class Sink>
void emit_saved_layers(const MemoryPrep& v, Recompute mode, uint64_t copies, Sink& sink) {
  if constexpr (Sink::kWantsRows) {
    emit_layer_activations(v.x, mode, copies, sink);
  } else {
    if (copies == 0) return;
    const uint64_t per_layer = mode == Recompute::Selective ? v.layer_saved : v.layer_full;
    sink.add(tensor_row(Component::Activations, Residence::Gpu, Dtype::Bytes, "saved layers", per_layer, 1, 1, 1, copies));
  }
}

// 5b. The operator temporaries of a moment, one micro-batch's worth: the
// forward's projection output (GPT) or partial row-parallel sums (Llama),
// which stay; in the loop, backward's activation gradients of one layer; at
// the head, the residual stream's and the final norm's output gradients;
// under sequence parallelism the gathered and reduced token rows of forward
// and backward and the norm weights' partial gradients; on a stage after the
// first the input gradient it keeps for the stage before. And the CUDA
// backend's own scratch: attention's scores and score gradients of one
// sequence, or flash attention's row dots (executor/cuda_backend.cc). The CPU backend keeps other scratch
// (the reference kernels' scores, fp32 copies of bf16 operands): validate on
// the CPU shows that difference under backend_scratch. Returns the bytes of
// the moment's own rows (backward's, in the loop or at the head).
template <class Sink>
uint64_t emit_executor_workspace(const ActivationShape& x, bool first, ExecutorMoment moment, Sink& sink) {
  const Component W = Component::Workspace;
  const Residence G = Residence::Gpu;
  const uint64_t T = x.s * x.b, To = x.tokens_outside(), h = x.h, q = x.a_t * x.d, kv = x.kv_t * x.d, f = x.f_t;
  uint64_t own_bytes = 0;
  // `when`: the moment a row belongs to (End: every moment, it stays).
  auto row = [&](const char* name, uint64_t d0, uint64_t d1, uint64_t copies, ExecutorMoment when) {
    if (when != ExecutorMoment::End && when != moment) return;
    const MemoryRow r = tensor_row(W, G, x.dtype, name, d0, d1, 1, 1, copies);
    if (when != ExecutorMoment::End) own_bytes += r.bytes;
    sink.add(r);
  };
  const ExecutorMoment L = ExecutorMoment::Loop, H = ExecutorMoment::Head, always = ExecutorMoment::End;
  // The two models' buffers (rows x width, copies), as their stage_forward
  // and stage_backward allocate them.
  enum Width { Hidden, Ffn, QueryHeads, KvHeads };
  struct Buffer {
    const char* name;
    bool all_tokens;  // T rows (inside the tensor-parallel regions), else To
    Width width;
    uint64_t copies;
    ExecutorMoment when;
  };
  static constexpr Buffer kGpt[] = {
      {"projection output (attention, then MLP) [T,h]", true, Hidden, 1, ExecutorMoment::End},
      {"backward: residual-stream gradient [To,h]", false, Hidden, 1, ExecutorMoment::Loop},
      {"backward: MLP gradients [T,f/t]", true, Ffn, 2, ExecutorMoment::Loop},
      {"backward: norm-output gradients [T,h]", true, Hidden, 2, ExecutorMoment::Loop},
      {"backward: attention-output, q, k, v gradients [T,a/t*d]", true, QueryHeads, 4, ExecutorMoment::Loop}};
  static constexpr Buffer kLlama[] = {
      {"row-parallel partial sums [T,h]", true, Hidden, 1, ExecutorMoment::End},
      {"backward: residual-stream gradient [To,h]", false, Hidden, 1, ExecutorMoment::Loop},
      {"backward: gate, up and product gradients [T,f/t]", true, Ffn, 3, ExecutorMoment::Loop},
      {"backward: norm-output gradients [T,h]", true, Hidden, 2, ExecutorMoment::Loop},
      {"backward: attention-output and query gradients [T,a/t*d]", true, QueryHeads, 2, ExecutorMoment::Loop},
      {"backward: key and value gradients [T,kv/t*d]", true, KvHeads, 2, ExecutorMoment::Loop}};
  const uint64_t widths[] = {h, f, q, kv};
  for (const Buffer& buffer : x.swiglu ? std::span<const Buffer>(kLlama) : std::span<const Buffer>(kGpt)) {
    row(buffer.name, buffer.all_tokens ? T : To, widths[buffer.width], buffer.copies, buffer.when);
  }
  row("backward: residual-stream gradient [To,h]", To, h, 1, H);
  row("backward: final norm output gradient [T,h]", T, h, 1, H);
  if (x.sp) {
    row("sequence parallelism: gathered token rows, forward's [T,h]", T, h, 1, always);
    row("sequence parallelism: reduced token rows, forward's [To,h]", To, h, 1, always);
    for (ExecutorMoment m : {L, H}) {
      row("sequence parallelism: gathered token rows, backward's [T,h]", T, h, 1, m);
      row("sequence parallelism: reduced token rows, backward's [To,h]", To, h, 1, m);
      row("sequence parallelism: norm weight gradients [h]", h, x.swiglu ? 1 : 2, 1, m);
    }
  }
  if (!first) row("input gradient kept for the previous stage [To,h]", To, h, 1, always);
  // The CUDA backend's attention scratch. Flash-style
  // (kernels/flash_attention_cuda.h): backward's fp32 row dots dout . out of
  // the micro-batch. Materialised, through cuBLASLt
  // (kernels/attention_gemm_cuda.h): fp32 scores and score gradients of one
  // sequence, and the gradients again in the working precision for the
  // products that read them (fp32: the same buffer).
  if (x.flash) {
    sink.add(tensor_row(Component::BackendScratch, G, Dtype::Fp32, "CUDA flash attention row dots [b,a/t,s]", x.b, x.a_t,
                        x.s, 1, 1));
    return own_bytes;
  }
  sink.add(tensor_row(Component::BackendScratch, G, Dtype::Fp32, "CUDA attention scores [a/t,s,s], one sequence", x.a_t,
                      x.s, x.s, 1, 1));
  if (x.dtype != Dtype::Fp32) {
    sink.add(tensor_row(Component::BackendScratch, G, x.dtype, "CUDA attention score gradients [a/t,s,s], one sequence",
                        x.a_t, x.s, x.s, 1, 1));
  }
  return own_bytes;
}

// What one stage's executor holds at each moment besides the operator
// workspace: gathered and open units and step-end buffers (elements).
struct ExecutorHeld {
  struct Moment {
    bool possible = false;
    uint64_t gathered = 0, open = 0, end = 0;
    uint64_t elems() const { return gathered + open + end; }
  };
  std::array<Moment, 3> at{};  // by ExecutorMoment
  Dtype low = Dtype::Bf16;
  bool zero3 = false, units = false, zero1 = false;
  // The step's end is the pipeline's tied-embedding sum, not the update
  // (whichever of the two holds more; see executor_held).
  bool end_is_tied_sum = false;
  // A pipeline or tensor-parallel rank has freed each micro-batch's
  // activations by its step's end (executor/activation_sets.h); a
  // data-parallel rank's trainer still holds the last one's.
  bool frees_activations = false;
  uint64_t stage_total = 0, all_gathered = 0, largest = 0, largest_padded = 0, per_rank = 0;
  uint64_t chunk = 0;  // the largest unit's chunk, ceil(largest / dp)
  // Per moment: whether it can be the peak, and its held units' bytes (what
  // peak_moment compares, with the workspace's own rows).
  std::array<bool, 3> possible() const { return {at[0].possible, at[1].possible, at[2].possible}; }
  std::array<uint64_t, 3> held_bytes() const {
    const uint64_t b = dtype_bytes(low);
    return {at[0].elems() * b, at[1].elems() * b, at[2].elems() * b};
  }
};

// The executor's units on a stage (executor/gpt_model.cc, llama_model.cc
// units): a layer, the first stage's embedding (with positions and norm),
// the last stage's final norm (with an untied head), a pipeline's tied
// head copy; elements of each, 0 where the stage has none.
struct StageUnits {
  uint64_t layer = 0, first = 0, final = 0, head_copy = 0;
  uint64_t largest() const { return std::max({layer, first, final, head_copy}); }
};

StageUnits stage_units(const ModelShape& m, const RankParams& r, const StageParams& sp) {
  StageUnits u;
  u.layer = r.layer_dense + r.layer_experts;
  u.first = sp.first ? r.embedding + r.position + r.embedding_norm : 0;
  u.final = sp.last ? r.final_norm + (m.tied ? 0 : r.head) : 0;
  u.head_copy = sp.last && m.tied && !sp.first ? r.head : 0;
  return u;
}

// One rank's share of a stage's dense parameters: the frameworks' (and
// zeroplan's ZeRO-1) flat buffer padded once to dp equal parts, ceil(P / dp);
// zeroplan's ZeRO-2/3 partition each unit on its own (executor/zero_units.cc:
// ceil(unit / dp) per unit), which is more when dp does not divide a unit.
uint64_t dense_partition(const ModelShape& m, const Layout& l, const RankParams& r, const StageParams& sp) {
  const uint64_t dp = l.dp;
  auto share = [dp](uint64_t n) { return (n + dp - 1) / dp; };
  if (l.framework != Framework::Zeroplan || l.zero_stage < 2 || sp.experts > 0) return share(sp.dense);
  const StageUnits u = stage_units(m, r, sp);
  return share(u.first) + sp.layers * share(u.layer) + share(u.final) + share(u.head_copy);
}

ExecutorHeld executor_held(const MemoryInputs& in, const MemoryPrep& v, const StageParams& sp) {
  const Layout& l = in.layout;
  const RankParams& r = v.r;
  ExecutorHeld h;
  h.low = low_dtype(l);
  const uint64_t dp = l.dp;
  auto padded = [dp](uint64_t n) { return (n + dp - 1) / dp * dp; };
  const bool tied = in.model.tied;
  h.zero3 = l.zero_stage == 3;
  h.units = l.zero_stage >= 2;
  h.zero1 = l.zero_stage == 1;
  const StageUnits units = stage_units(in.model, r, sp);
  const uint64_t layer = units.layer, first = units.first, final = units.final, head_copy = units.head_copy;
  const uint64_t tiled = layer / l.tile_factor;
  h.stage_total = sp.dense + sp.experts;
  // What all of the stage's units come to gathered (the most ZeRO-3 can
  // hold): dp of each unit's padded chunks, so dp partitions' worth.
  h.all_gathered = sp.experts > 0 ? h.stage_total : dense_partition(in.model, l, r, sp) * dp;
  h.largest = units.largest();
  h.chunk = (h.largest + dp - 1) / dp;
  for (uint64_t u : {layer, first, final, head_copy}) {
    if (u > 0 && padded(u) != u) h.largest_padded = std::max(h.largest_padded, padded(u));
  }
  ExecutorHeld::Moment& loop = h.at[static_cast<int>(ExecutorMoment::Loop)];
  ExecutorHeld::Moment& head = h.at[static_cast<int>(ExecutorMoment::Head)];
  ExecutorHeld::Moment& end = h.at[static_cast<int>(ExecutorMoment::End)];
  loop.possible = true;
  // ZeRO-3 gathers a unit into dp equal chunks (executor/zero_units.cc), so
  // a unit dp does not divide arrives padded.
  loop.gathered = h.zero3 ? std::min<uint64_t>(sp.layers, 2) * padded(tiled) : 0;
  // Tied units held open over the whole backward (absent ones pad to 0).
  const uint64_t held_tied = tied ? padded(first) + padded(head_copy) : 0;
  if (h.units) loop.open = tied ? held_tied + padded(layer) : std::max(padded(first), padded(layer));
  if (sp.last) {
    head.possible = true;
    if (h.zero3) {
      head.gathered = tied ? std::max(padded(sp.first ? first : r.head) + padded(r.final_norm), padded(r.final_norm) + padded(tiled))
                           : padded(final) + padded(tiled);
    }
    if (h.units) head.open = tied ? held_tied + padded(r.final_norm) : padded(final);
  }
  h.frees_activations = l.tp > 1 || l.pp > 1;
  const uint64_t shard = (h.stage_total + dp - 1) / dp;
  h.per_rank = std::min(shard, (in.options.reduce_bucket_elems + dp - 1) / dp);
  if (h.zero1 && dp > 1) end.end = h.per_rank * dp + h.per_rank;
  if (l.zero_stage == 2) end.end = h.chunk + h.largest_padded;
  // Just before the update a pipeline's end stages sum a tied embedding's
  // gradient (executor/pipeline_parallel.cc): the other end's table arrives
  // in a buffer of its own while the tied units' gradient buffers are still
  // open. The step's end is whichever of the two moments holds more.
  const uint64_t tied_table = tied && l.pp > 1 ? (sp.first ? r.embedding : sp.last ? r.head : 0) : 0;
  const uint64_t tied_open = h.units ? held_tied : 0;
  if (tied_table > 0 && tied_table + tied_open > end.end + end.open) {
    end.end = tied_table;
    end.open = tied_open;
    h.end_is_tied_sum = true;
  }
  end.possible = end.end > 0;
  return h;
}

// The moment of the peak: the one whose held units and own workspace rows
// (prepare_shape's executor_own_workspace) come to the most; the first such
// in loop, head, end order. A rank that frees its activations by the step's
// end (`frees_activations`) holds `freed_bytes` fewer there: the activation
// side's GPU rows that go (activations and logits; the recompute set shared
// by the micro-batches stays).
ExecutorMoment peak_moment(const std::array<uint64_t, 3>& held_bytes, const std::array<bool, 3>& possible,
                           const std::array<uint64_t, 3>& own_workspace_bytes, uint64_t freed_bytes,
                           bool frees_activations) {
  auto value = [&](int m) {
    const bool freed = frees_activations && m == static_cast<int>(ExecutorMoment::End);
    return held_bytes[m] + own_workspace_bytes[m] + (freed ? 0 : freed_bytes);
  };
  int best = static_cast<int>(ExecutorMoment::Loop);
  for (int m = best + 1; m < 3; ++m) {
    if (possible[m] && value(m) > value(best)) best = m;
  }
  return static_cast<ExecutorMoment>(best);
}

// Whether a rank at `moment` holds its activation side without the rows it
// freed (the step's end of a pipeline or tensor-parallel rank).
bool activations_freed(ExecutorMoment moment, bool frees_activations) {
  return frees_activations && moment == ExecutorMoment::End;
}

// The activation side's rows a rank still holds at its step's end once it
// has freed each micro-batch's: all but the GPU's activations and logits
// (the recompute set shared by the micro-batches stays) go to `held`; every
// row also to `all` when given, so one emission fills both.
template <class Sink>
class HeldAtEndSink {
 public:
  explicit HeldAtEndSink(Sink& held, Sink* all = nullptr) : held_(held), all_(all) {}
  void add(const MemoryRow& row) {
    if (all_) all_->add(row);
    const bool freed = row.residence == Residence::Gpu && (row.component == Component::Activations || row.component == Component::Logits);
    if (!freed) held_.add(row);
  }
  static constexpr bool kWantsRows = Sink::kWantsRows;

 private:
  Sink& held_;
  Sink* all_;
};

// The rows of the held units and step-end buffers at `moment`.
template <class Sink>
void emit_executor_held(const ExecutorHeld& h, uint64_t dp, ExecutorMoment moment, Sink& sink) {
  const Component B = Component::Buckets;
  const Residence G = Residence::Gpu;
  const ExecutorHeld::Moment& at = h.at[static_cast<int>(moment)];
  const uint64_t chunk = h.chunk;
  if (h.zero3) sink.add(tensor_row(Component::Zero3Gathered, G, h.low, "gathered parameters", std::min(at.gathered, h.all_gathered)));
  if (h.units) sink.add(tensor_row(B, G, h.low, "reduce-scatter receive chunk", chunk));
  if (at.open > 0) sink.add(tensor_row(B, G, h.low, "open unit gradient buffers", at.open));
  if (moment == ExecutorMoment::End && h.end_is_tied_sum) {
    sink.add(tensor_row(B, G, h.low, "pipeline: the other end stage's tied-embedding gradient", at.end));
  } else if (moment == ExecutorMoment::End && h.zero1) {
    sink.add(tensor_row(B, G, h.low, "reduce-scatter/all-gather bucket", h.per_rank, dp));
    sink.add(tensor_row(B, G, h.low, "bucket's own chunk", h.per_rank));
  } else if (moment == ExecutorMoment::End) {
    sink.add(tensor_row(B, G, h.low, "updated chunk of a unit", chunk));
    if (h.largest_padded > 0) sink.add(tensor_row(B, G, h.low, "all-gathered unit dp does not divide", h.largest_padded));
  }
}

// A pipeline rank's own buffers (executor/pipeline_parallel.cc), at
// `moment` (End: the rows every moment holds):
//  - GPipe and 1F1B: the receive buffers, the activation from the stage
//    before and the gradient from the stage after, [To,h] each, kept over
//    the step;
//  - interleaved (interleaved_schedule): what arrives waits in a queue and
//    goes once used, so a backward holds the gradient it consumes (not on
//    the last rank, whose peak is its last chunk's backward, below) and
//    nothing at the step's end; the rank's chunks share one input-gradient
//    buffer, which the first rank's later chunks need too (every other
//    stage keeps one anyway, emit_executor_workspace); a rank with a steady
//    state holds a forward's output over the backward that follows it
//    (holds_output_over_backward), in the loop.
template <class Sink>
void emit_pipeline_rows(const ActivationShape& x, const StageParams& sp, ExecutorMoment moment, Sink& sink) {
  if (sp.first && sp.last) return;  // no pipeline
  const Component W = Component::Workspace, B = Component::Buckets;
  const Residence G = Residence::Gpu;
  const uint64_t To = x.tokens_outside(), h = x.h;
  if (!sp.interleaved) {
    if (!sp.first) sink.add(tensor_row(B, G, x.dtype, "pipeline: received activation [To,h]", To, h));
    if (!sp.last) sink.add(tensor_row(B, G, x.dtype, "pipeline: received gradient [To,h]", To, h));
    return;
  }
  const bool backward = moment == ExecutorMoment::Loop || moment == ExecutorMoment::Head;
  if (sp.first) sink.add(tensor_row(W, G, x.dtype, "interleaved pipeline: a later chunk's input gradient [To,h]", To, h));
  if (backward && !sp.last) sink.add(tensor_row(B, G, x.dtype, "interleaved pipeline: received gradient [To,h]", To, h));
  if (backward && sp.holds_output) {
    sink.add(tensor_row(W, G, x.dtype, "interleaved pipeline: a forward's output held over the backward [To,h]", To, h));
  }
}

// emit_pipeline_rows' bytes at each moment.
std::array<uint64_t, 3> pipeline_bytes(const ActivationShape& x, const StageParams& sp) {
  std::array<uint64_t, 3> bytes{};
  for (int m = 0; m < 3; ++m) {
    ByteCountSink at;
    emit_pipeline_rows(x, sp, static_cast<ExecutorMoment>(m), at);
    bytes[m] = at.bytes();
  }
  return bytes;
}

// A stage's own workspace per moment (the rows of that moment alone), with
// its pipeline's moment-bound rows (`pipeline`: pipeline_bytes).
std::array<uint64_t, 3> own_workspace(const MemoryPrep& v, const StageParams& sp, const std::array<uint64_t, 3>& pipeline) {
  std::array<uint64_t, 3> own = v.executor_own_workspace[sp.first ? 1 : 0];
  const uint64_t every = pipeline[static_cast<int>(ExecutorMoment::End)];
  for (ExecutorMoment m : {ExecutorMoment::Loop, ExecutorMoment::Head}) own[static_cast<int>(m)] += pipeline[static_cast<int>(m)] - every;
  return own;
}

// What depends on where a stage sits in the pipeline (its receive buffers:
// emit_pipeline_rows): the CUDA backend's device copies of the token index
// arrays its ends build on the host
// (executor/cuda_backend.cc, indices(), grown to the largest use): the token
// rows of the lookup and the positions and the loss's targets, T each; on the
// first stage the embedding and position gradients' row groups, at most T + 1
// starts and T rows (as many as the distinct tokens, a bound); and under
// tensor parallelism GPT's bias add after the reduction reads a row index of
// zeros per token row it adds to. Every stage's backend holds its cuBLASLt
// workspace.
template <class Sink>
void emit_stage_end_rows(const ActivationShape& x, bool first, bool last, Sink& sink) {
  const Residence G = Residence::Gpu;
  const uint64_t T = x.s * x.b;
  const Component S = Component::BackendScratch;
  if (first || last) sink.add(tensor_row(S, G, Dtype::Int32, "CUDA token rows / targets [T]", T));
  if (first) sink.add(tensor_row(S, G, Dtype::Int32, "CUDA gradient row groups, at most [2T+1]", 2 * T + 1));
  if (x.t > 1 && !x.swiglu) sink.add(tensor_row(S, G, Dtype::Int32, "CUDA bias row indices [To]", x.tokens_outside()));
  sink.add(tensor_row(S, G, Dtype::Bytes, "CUDA cuBLASLt workspace", kZeroplanCudaMatmulWorkspaceBytes));
}

// The executor's moment of the peak on a stage whose activation side would
// free `freed_bytes` by the step's end, and whether it does there (`own`:
// the stage's own workspace per moment, own_workspace).
struct PeakMoment {
  ExecutorMoment moment = ExecutorMoment::Loop;
  bool activations_freed = false;
};
PeakMoment executor_peak(const ExecutorHeld& h, const std::array<uint64_t, 3>& own, uint64_t freed_bytes) {
  const ExecutorMoment m = peak_moment(h.held_bytes(), h.possible(), own, freed_bytes, h.frees_activations);
  return {m, activations_freed(m, h.frees_activations)};
}

// zeroplan's executor: its ZeRO-3 gathered units, gradient buckets,
// operator workspace and pipeline buffers at the step's peak (dp = 1 too:
// the same code runs). Per moment, besides what every moment holds:
//  - Loop: ZeRO-3 holds a layer and the one before it gathered; ZeRO-2/3
//    give each unit's gradients a buffer padded to dp chunks while backward
//    computes it, reduce-scattered and freed when it is finished
//    (executor/zero_units.h): open in the loop, one layer's, beside a tied
//    embedding's on the first stage (its gradients come from the tied head
//    first and the token lookup last) and a tied head's copy on a
//    pipeline's last stage (both kept open over the step until the end
//    stages have summed them, executor/pipeline_parallel.cc); an untied
//    embedding opens alone after the last layer;
//  - Head (last stage): GPT holds the output layer (the tied embedding, or
//    its copy) and the final norm gathered, then the final norm and the
//    last layer; Llama the final norm with its untied head and the last
//    layer; open: the tied embedding or head copy and the final norm's
//    gradients (Llama: the final norm's and head's);
//  - End: ZeRO-1 reduce-scatters and all-gathers through a bucket of
//    reduce_bucket_elems (dp chunks of ceil(bucket / dp)) and a chunk-sized
//    piece (nothing with one rank); ZeRO-2 all-gathers each updated unit
//    from a chunk, through a padded buffer for a unit dp does not divide.
//    ZeRO-0 all-reduces the flat gradients in place, ZeRO-3 updates its
//    partition in place. A pipeline or tensor-parallel rank has freed each
//    micro-batch's activations and logits by then
//    (executor/activation_sets.h; the recompute set shared by the
//    micro-batches stays), a data-parallel rank still holds the last
//    one's: with few tokens the end can be the former's peak, and its
//    activation side is then HeldAtEndSink's. Just before the update a
//    pipeline's end stages sum a tied embedding's gradient: the other end's
//    table in a buffer of its own, the tied units' gradient buffers still
//    open (ZeRO-2/3); End stands for whichever of the two holds more.
// Every moment: ZeRO-2/3's receive buffer of the largest chunk, forward's
// workspace, the rows of the stage's place (pipeline receive buffers, token
// index arrays), the backend's scratch.
template <class Sink>
void emit_executor_buffers(const ExecutorHeld& h, uint64_t dp, const MemoryPrep& v, const StageParams& sp,
                           ExecutorMoment moment, Sink& sink) {
  emit_executor_held(h, dp, moment, sink);
  emit_executor_workspace(v.x, sp.first, moment, sink);
  emit_pipeline_rows(v.x, sp, moment, sink);
  emit_stage_end_rows(v.x, sp.first, sp.last, sink);
}

// The same rows' GPU bytes on the prepared activation side's i-th candidate
// stage from a state slot's part (the search's hot path).
// With the activation side's GPU bytes at that moment (its rows at the
// step's end where the rank has freed them).
uint64_t executor_bytes(const StatesCache::ExecutorSlot& e, const MemoryPrep& v, int i, uint64_t& activation_gpu_bytes) {
  const uint64_t freed = v.act_bytes[i][0] - v.act_end_bytes[i][0];
  const ExecutorMoment moment = peak_moment(e.held_bytes, e.possible, v.act_executor_own[i], freed, e.frees_activations);
  const int m = static_cast<int>(moment);
  activation_gpu_bytes = activations_freed(moment, e.frees_activations) ? v.act_end_bytes[i][0] : v.act_bytes[i][0];
  return e.row_bytes[m] + v.act_executor_bytes[i][m];
}

// Model states, ZeRO-3 working set, buckets and offload staging of one stage:
// what changes with the ZeRO stage, offload and dp.
template <class Sink>
void emit_states(const MemoryInputs& in, const MemoryPrep& v, const StageParams& sp, Sink& sink) {
  const Layout& l = in.layout;
  const MemoryOptions& o = in.options;
  const RankParams& r = v.r;
  const Dtype low = low_dtype(l);

  // 1. Model states: dense parameters partition over dp, experts over dp/ep.
  const uint64_t dense_shard = dense_partition(in.model, l, r, sp);
  if constexpr (requires { Sink::kResidenceOnly; }) {
    add_partitioned_state_bytes(v.rules->by_residence, sp.dense, dense_shard, sink);
    if (sp.experts > 0) add_model_state_bytes(v.rules->by_residence, sp.experts, l.dp / l.ep, sink);
  } else {
    emit_partitioned_states(v.rules->placed, sp.dense, dense_shard, "dense parameters", sink);
    if (sp.experts > 0) emit_model_states(v.rules->placed, sp.experts, l.dp / l.ep, "expert parameters", sink);
  }
  const uint64_t stage_total = sp.dense + sp.experts;

  // 2. ZeRO-3 working set: gathered parameters of the current and next unit.
  // zeroplan's executor: emit_executor_buffers, with the moment of its peak
  // (a stage without layers: all of its few units, at most).
  if (l.zero_stage == 3 && l.framework == Framework::DeepSpeed) {
    // DeepSpeed gathers module by module, prefetching up to
    // stage3_prefetch_bucket_size elements and holding at most
    // stage3_max_live_parameters (deepspeed/runtime/zero/partitioned_param_coordinator.py).
    const uint64_t gathered = std::min(o.max_live_elems, r.largest_module / l.tile_factor + o.prefetch_elems);
    sink.add(tensor_row(Component::Zero3Gathered, Residence::Gpu, low, "gathered parameters", std::min(gathered, stage_total)));
  } else if (l.zero_stage == 3 && sp.layers == 0) {
    sink.add(tensor_row(Component::Zero3Gathered, Residence::Gpu, low, "gathered parameters", stage_total));
  }

  // 3. Gradient buckets (data parallel only). Megatron's are views into its
  // contiguous main-grad buffer (core/distributed/param_and_grad_buffer.py).
  if (l.dp > 1 && l.framework == Framework::DeepSpeed) {
    const uint64_t bucket = std::min(o.reduce_bucket_elems, stage_total);
    sink.add(tensor_row(Component::Buckets, Residence::Gpu, low, "gradient reduce bucket", bucket, 1, 1, 1,
                        o.overlap_comm ? 2 : 1));
  }
  if (l.framework == Framework::Zeroplan && l.zero_stage >= 2 && l.offload_optimizer != Offload::None && sp.layers > 0) {
    // zeroplan's executor sends ZeRO-2/3's reduced chunks to the offloaded
    // partition through two host staging slots of the largest chunk
    // (executor/host_gradient_drain.h).
    const uint64_t chunk = (stage_units(in.model, r, sp).largest() + l.dp - 1) / l.dp;
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, low, "reduced gradient chunks in flight", chunk, 1, 1, 1,
                        kZeroplanDrainSlots));
  }
  if (l.framework == Framework::Zeroplan && l.delayed_update && l.offload_optimizer != Offload::None) {
    // ZeRO-Offload's delayed parameter update (arXiv 2101.06840 Sec. 4.3) in
    // zeroplan's executor (executor/data_parallel.cc): the host optimizer
    // reads the step before's reduced gradients while the next step reduces
    // into a second buffer, and writes the partition's weights to one of its
    // own (for an fp32 model, the fp32 weights it keeps).
    const uint64_t shard = sp.experts == 0 ? dense_shard : (stage_total + l.dp - 1) / l.dp;
    sink.add(tensor_row(Component::MainGradients, Residence::Host, Dtype::Fp32, "delayed update: the step before's gradients",
                        shard));
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, low, "delayed update: the updated weight partition", shard));
  }

  // 4. Offload staging in pinned host memory for NVMe (DeepSpeed aio buffers).
  if (l.offload_param == Offload::Nvme) {
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, low, "nvme parameter swap buffers",
                        o.nvme_param_buffer_elems));
  }
  if (l.offload_optimizer == Offload::Nvme) {
    const uint64_t partition = (stage_total + l.dp - 1) / l.dp;
    const uint64_t unit = std::min(o.optimizer_subgroup_elems, partition);
    const uint64_t per_param = v.rules->optimizer_side_bytes;
    sink.add(tensor_row(Component::OffloadStaging, Residence::Host, Dtype::Bytes, "nvme optimizer swap sub-group",
                        unit * per_param));
  }

}

// Activations, recompute workspace, token ids and the output layer of one
// stage: what depends on the shape, the pipeline and the micro-batches only.
template <class Sink>
void emit_activations(const MemoryInputs& in, const MemoryPrep& v, uint32_t stage, Sink& sink) {
  const Layout& l = in.layout;
  const ModelShape& m = in.model;
  const RankParams& r = v.r;
  const uint64_t layers = layers_on_stage(m.layers, l, stage);
  const bool first = stage == 0, last = stage + 1 == l.pp;

  // 5. Activations of the micro-batches in flight.
  const ActivationShape& x = v.x;
  const InFlight f = in_flight(l, layers, m.layers, stage);
  if (l.recompute == Recompute::Full) {
    const uint64_t recomputed = l.recompute_layers == 0 ? f.layers_per_unit
                                                        : std::min<uint64_t>(l.recompute_layers, f.layers_per_unit);
    if constexpr (Sink::kWantsRows) {
      emit_layer_checkpoints(x, l.partition_activations, l.checkpoints_to_cpu, f.units * recomputed, sink);
    } else if (f.units * recomputed > 0) {
      sink.add(tensor_row(Component::Activations, v.checkpoint_residence, Dtype::Bytes, "layer_input_checkpoint",
                          v.layer_checkpoint, 1, 1, 1, f.units * recomputed));
    }
    emit_saved_layers(v, Recompute::None, f.units * (f.layers_per_unit - recomputed), sink);
    // Backward rebuilds one layer at a time: one layer's full set is live,
    // except its input, which is the checkpoint itself when that stays whole
    // on the GPU (torch/utils/checkpoint.py detaches the saved input without
    // copying; zeroplan's executor reads it in place). A partitioned or
    // host-resident checkpoint is first gathered or copied into a new buffer.
    const bool input_shared = f.units * recomputed > 0 && !l.partition_activations && !l.checkpoints_to_cpu;
    sink.add(tensor_row(Component::RecomputeWorkspace, Residence::Gpu, Dtype::Bytes, "one recomputed layer",
                        v.layer_full - (input_shared ? v.layer_checkpoint : 0)));
  } else {
    emit_saved_layers(v, l.recompute, f.units * f.layers_per_unit, sink);
    if (l.recompute == Recompute::Selective && v.layer_full > v.layer_saved) {
      sink.add(tensor_row(Component::RecomputeWorkspace, Residence::Gpu, Dtype::Bytes,
                          "one layer's recomputed attention", v.layer_full - v.layer_saved));
    }
  }
  if (first) {
    // Token ids (int64 in Megatron and PyTorch data loaders, int32 in zeroplan)
    // and the embedding dropout mask, per micro-batch in flight.
    const Dtype ids = l.framework == Framework::Zeroplan ? Dtype::Int32 : Dtype::Int64;
    sink.add(tensor_row(Component::Activations, Residence::Gpu, ids, "input_ids [b,s]", x.b, x.s, 1, 1, f.first_chunk_microbatches));
    if (x.dropout) {
      sink.add(tensor_row(Component::Activations, Residence::Gpu, Dtype::Uint8, "embedding_dropout_mask [To,h]",
                          x.tokens_outside(), x.h, 1, 1, f.first_chunk_microbatches));
    }
  }
  if (last) emit_output_layer(in, x, r, f.last_chunk_microbatches, sink);
}

// 6. Runtime overheads: measured constants, one NCCL communicator per
// parallel group of more than one rank (none when emulated). Last, since the
// fragmentation reserve is a fraction of every tensor row before it.
uint64_t nccl_communicator_bytes(const Layout& l, const RuntimeOverheads& ov) {
  const uint64_t groups = l.emulated ? 0 : (l.dp > 1) + (l.tp > 1) + (l.pp > 1) + (l.ep > 1) + (l.ep > 1 && l.dp / l.ep > 1);
  return groups > 0 ? ov.nccl_first_communicator_bytes + (groups - 1) * ov.nccl_communicator_bytes : 0;
}

uint64_t fragmentation_bytes(uint64_t tensors, const RuntimeOverheads& ov) {
  return ov.fragmentation_fraction > 0 ? static_cast<uint64_t>(static_cast<double>(tensors) * ov.fragmentation_fraction) : 0;
}

// The runtime overheads that are the same on every stage.
uint64_t fixed_overhead_bytes(const MemoryInputs& in) {
  const RuntimeOverheads& ov = in.options.overheads;
  return ov.cuda_context_bytes + ov.cublas_workspace_bytes + nccl_communicator_bytes(in.layout, ov);
}

template <class Sink>
void emit_overheads(const MemoryInputs& in, Sink& sink) {
  const RuntimeOverheads& ov = in.options.overheads;
  // The reserve is a fraction of the tensors above (not of the overheads).
  if (ov.fragmentation_fraction > 0) {
    sink.add(tensor_row(Component::Fragmentation, Residence::Gpu, Dtype::Bytes, "allocator fragmentation reserve",
                        fragmentation_bytes(sink.gpu_total(), ov)));
  }
  sink.add(tensor_row(Component::CudaContext, Residence::Gpu, Dtype::Bytes, "CUDA context", ov.cuda_context_bytes));
  sink.add(tensor_row(Component::CublasWorkspace, Residence::Gpu, Dtype::Bytes, "cuBLAS handle (lazy module loading)",
                      ov.cublas_workspace_bytes));
  const uint64_t nccl = nccl_communicator_bytes(in.layout, ov);
  if (nccl > 0) sink.add(tensor_row(Component::NcclBuffers, Residence::Gpu, Dtype::Bytes, "NCCL communicators", nccl));
}

StageParams stage_params(const MemoryInputs& in, const MemoryPrep& v, uint32_t stage) {
  return stage_params(v.r, in.layout, layers_on_stage(in.model.layers, in.layout, stage), stage);
}

bool runs_executor(const MemoryInputs& in, const StageParams& sp) {
  return in.layout.framework == Framework::Zeroplan && sp.layers > 0;
}

// zeroplan's executor on a stage: what it holds and the moment of its peak
// (none, and the loop, where the stage runs no executor), its activation
// side freeing `freed_bytes` by the step's end, its own workspace `own`.
struct StageExecutor {
  bool runs = false;
  ExecutorHeld held;
  PeakMoment peak;
};
StageExecutor stage_executor(const MemoryInputs& in, const MemoryPrep& v, const StageParams& sp,
                             const std::array<uint64_t, 3>& own, uint64_t freed_bytes) {
  StageExecutor e;
  if (!runs_executor(in, sp)) return e;
  e.runs = true;
  e.held = executor_held(in, v, sp);
  e.peak = executor_peak(e.held, own, freed_bytes);
  return e;
}

// The state side with zeroplan's executor buffers at its peak.
template <class Sink>
void emit_states_and_buffers(const MemoryInputs& in, const MemoryPrep& v, const StageParams& sp, const StageExecutor& ex,
                             Sink& sink) {
  emit_states(in, v, sp, sink);
  if (ex.runs) emit_executor_buffers(ex.held, in.layout.dp, v, sp, ex.peak.moment, sink);
}

// A state slot's part of the executor buffers (StatesCache::ExecutorSlot).
StatesCache::ExecutorSlot executor_slot(const MemoryInputs& in, const MemoryPrep& v, const StageParams& sp) {
  StatesCache::ExecutorSlot e;
  if (!runs_executor(in, sp)) return e;
  e.present = true;
  const ExecutorHeld h = executor_held(in, v, sp);
  e.possible = h.possible();
  e.held_bytes = h.held_bytes();
  e.frees_activations = h.frees_activations;
  for (int m = 0; m < 3; ++m) {
    ByteCountSink rows;
    emit_executor_held(h, in.layout.dp, static_cast<ExecutorMoment>(m), rows);
    e.row_bytes[m] = rows.bytes();
  }
  return e;
}

// The GPU bytes of a stage's activation side that its step's end no longer
// holds (what HeldAtEndSink leaves out).
uint64_t freed_at_end_bytes(const MemoryInputs& in, const MemoryPrep& v, uint32_t stage) {
  ResidenceTotalsSink all, held;
  HeldAtEndSink<ResidenceTotalsSink> both(held, &all);
  emit_activations(in, v, stage, both);
  return all.gpu_total() - held.gpu_total();
}

template <class Sink>
void emit_stage(const MemoryInputs& in, const MemoryPrep& v, uint32_t stage, Sink& sink) {
  const StageParams sp = stage_params(in, v, stage);
  const StageExecutor ex =
      stage_executor(in, v, sp, own_workspace(v, sp, pipeline_bytes(v.x, sp)), freed_at_end_bytes(in, v, stage));
  emit_states_and_buffers(in, v, sp, ex, sink);
  if (ex.peak.activations_freed) {
    HeldAtEndSink<Sink> at_end(sink);
    emit_activations(in, v, stage, at_end);
  } else {
    emit_activations(in, v, stage, sink);
  }
  emit_overheads(in, sink);
}

// The activation side of each candidate stage, summed once per pipeline shape.
bool activations_match(const MemoryPrep& p, const Layout& l) {
  return p.act_valid && p.act_pp == l.pp && p.act_vpp == l.vpp && p.act_schedule == l.schedule &&
         p.act_grad_accum == l.grad_accum && p.act_recompute_layers == l.recompute_layers &&
         p.act_first == l.first_stage_layers && p.act_last == l.last_stage_layers;
}

void prepare_activations(MemoryPrep& p, const MemoryInputs& in, const uint32_t* stages, int count) {
  const Layout& l = in.layout;
  p.act_valid = true;
  p.act_pp = l.pp;
  p.act_vpp = l.vpp;
  p.act_schedule = l.schedule;
  p.act_grad_accum = l.grad_accum;
  p.act_recompute_layers = l.recompute_layers;
  p.act_first = l.first_stage_layers;
  p.act_last = l.last_stage_layers;
  p.act_count = count;
  ++p.activations_version;
  p.act_totals_valid = false;  // the per-component totals are built when a breakdown asks for them
  for (int i = 0; i < count; ++i) {
    p.act_stages[i] = stages[i];
    ResidenceTotalsSink sums, held_at_end;
    HeldAtEndSink<ResidenceTotalsSink> both(held_at_end, &sums);
    emit_activations(in, p, stages[i], both);
    for (int r = 0; r < kNumResidences; ++r) {
      p.act_bytes[i][r] = sums.total(static_cast<Residence>(r));
      p.act_end_bytes[i][r] = held_at_end.total(static_cast<Residence>(r));
    }
    const StageParams sp = stage_params(in, p, stages[i]);
    p.act_dense[i] = sp.dense;
    p.act_experts[i] = sp.experts;
    p.act_layers[i] = sp.layers;
    const int f = sp.first ? 1 : 0;
    const uint64_t stage_end = p.executor_stage_end_bytes[f][sp.last ? 1 : 0];
    const std::array<uint64_t, 3> pipeline = pipeline_bytes(p.x, sp);
    const std::array<uint64_t, 3> own = own_workspace(p, sp, pipeline);
    for (int m = 0; m < 3; ++m) {
      p.act_executor_own[i][m] = own[m];
      p.act_executor_bytes[i][m] = p.executor_workspace_bytes[f][m] + pipeline[m] + stage_end;
    }
  }
}

// The parameters of the prepared activation side's i-th candidate stage.
StageParams candidate_params(const MemoryPrep& p, int i, const Layout& l) {
  StageParams s;
  place_in_pipeline(s, l, p.act_stages[i]);
  s.dense = p.act_dense[i];
  s.experts = p.act_experts[i];
  s.layers = p.act_layers[i];
  return s;
}

// Invalidates every cached state slot (the rules or options changed).
void new_states_generation(StatesCache& c) {
  for (auto& entry : c.entries) {
    if (entry.generation != 0) entry.generation = ++c.generations;
  }
}

// What the state slots depend on besides the state choice, the rules and the
// options (checked where those are used): the candidate stages' parameters,
// dp, ep, tp, emulation and the per-rank parameters.
void refresh_states_key(StatesCache& c, const MemoryPrep& p, const MemoryInputs& in) {
  StatesCache::StatesKey k;
  k.model = &in.model;
  k.dp = in.layout.dp;
  k.ep = in.layout.ep;
  k.pp = in.layout.pp;
  k.tp = in.layout.tp;
  k.emulated = in.layout.emulated;
  k.r = p.r;
  k.count = p.act_count;
  k.stages = p.act_stages;
  k.dense = p.act_dense;
  k.experts = p.act_experts;
  k.layers = p.act_layers;
  k.framework = p.framework;
  k.delayed_update = in.layout.delayed_update;
  c.activations_version_seen = p.activations_version;
  auto holds = [&k](const StatesCache::StatesEntry& e) { return e.generation != 0 && e.key == k; };
  if (holds(c.entries[c.current])) return;
  for (int i = 0; i < static_cast<int>(c.entries.size()); ++i) {
    if (holds(c.entries[i])) {
      c.current = i;
      return;
    }
  }
  // Round robin: the search's splits come back in a fixed cycle.
  c.current = c.victim;
  c.victim = (c.victim + 1) % static_cast<int>(c.entries.size());
  StatesCache::StatesEntry& e = c.entries[c.current];
  e.key = k;
  e.generation = ++c.generations;
}

int tile_index(uint32_t tile_factor) {
  switch (tile_factor) {
    case 1: return 0;
    case 4: return 1;
    case 16: return 2;
    default: return -1;
  }
}

// The state side of every candidate stage for this layout's state choice,
// from its slot or computed into it; nullptr for a tile factor without a
// slot. `p` holds the prepared shape and activation side of `in`.
const StatesCache::StateSlot* state_slot(StatesCache& c, MemoryPrep& p, const MemoryInputs& in, Reuse reuse) {
  const Layout& l = in.layout;
  // Same shape: the rules, the activation side and the key's layout fields
  // are those the previous call checked (also when that call had no slot).
  if (reuse == Reuse::Check) {
    if (c.rules_version_seen != p.rules_version) {
      c.rules_version_seen = p.rules_version;
      new_states_generation(c);
    }
    const StatesCache::StatesEntry& current = c.entries[c.current];
    if (current.generation == 0 || c.activations_version_seen != p.activations_version ||
        current.key.dp != l.dp || current.key.emulated != l.emulated || current.key.delayed_update != l.delayed_update) {
      refresh_states_key(c, p, in);
    }
  }
  const int tile = tile_index(l.tile_factor);
  if (tile < 0) return nullptr;
  const MemoryOptions& o = in.options;
  const RuntimeOverheads& ov = o.overheads;
  const StatesCache::OptionsKey options{o.reduce_bucket_elems, o.prefetch_elems, o.max_live_elems,
                                        o.nvme_param_buffer_elems, o.optimizer_subgroup_elems,
                                        ov.cuda_context_bytes, ov.cublas_workspace_bytes,
                                        ov.nccl_first_communicator_bytes, ov.nccl_communicator_bytes,
                                        o.overlap_comm, true};
  if (!(options == c.options_seen[l.zero_stage])) {
    c.options_seen[l.zero_stage] = options;
    new_states_generation(c);
  }
  const int index = ((l.zero_stage * 3 + static_cast<int>(l.offload_optimizer)) * 3 + static_cast<int>(l.offload_param)) * 3 + tile;
  StatesCache::StatesEntry& entry = c.entries[c.current];
  StatesCache::StateSlot& slot = entry.slots[index];
  if (slot.generation != entry.generation) {
    prepare_rules(p, l);
    StatesCache::StatesEntry::ExecutorPart& part = entry.executor_parts[l.zero_stage * 3 + tile];
    const bool part_valid = part.generation == entry.generation;
    for (int i = 0; i < p.act_count; ++i) {
      ResidenceTotalsSink states;
      const StageParams sp = candidate_params(p, i, l);
      emit_states(in, p, sp, states);
      for (int r = 0; r < kNumResidences; ++r) slot.bytes[i][r] = states.total(static_cast<Residence>(r));
      if (!part_valid) part.stages[i] = executor_slot(in, p, sp);
      slot.executor[i] = part.stages[i];
    }
    part.generation = entry.generation;
    slot.fixed_overhead_bytes = fixed_overhead_bytes(in);
    slot.generation = entry.generation;
  }
  return &slot;
}

}  // namespace

void memory_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink) {
  MemoryPrep p;
  prepare(p, in);
  emit_stage(in, p, stage, sink);
}

void activation_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink) {
  MemoryPrep p;
  prepare(p, in);
  emit_activations(in, p, stage, sink);
}

namespace {

// Only these stages can be the most loaded: stage 0 (embedding, most
// micro-batches in flight), the first stage holding one of the remainder
// layers, and the last (output layer, logits). Any other stage has no more
// layers than one of them, fewer micro-batches in flight and neither end.
// With an uneven split the stages between the ends hold equal layers, and
// the first of them (stage 1) has the most micro-batches in flight.
int candidate_stages(const ModelShape& m, const Layout& l, uint32_t* stages) {
  const uint32_t pp = l.pp;
  const uint32_t rem = static_cast<uint32_t>(m.layers % pp);
  const uint32_t second = uneven_split(l) ? (pp > 1 ? 1u : 0u) : (rem > 0 ? pp - rem : 0u);
  int count = 0;
  for (uint32_t stage : {0u, second, pp - 1}) {
    bool seen = false;
    for (int j = 0; j < count; ++j) seen |= stages[j] == stage;
    if (!seen) stages[count++] = stage;
  }
  return count;
}

// The activation side of the candidate stages, rebuilt when the pipeline
// shape changed.
void prepare_activations_if_changed(MemoryPrep& prep, const MemoryInputs& in) {
  if (activations_match(prep, in.layout)) return;
  uint32_t stages[3];
  const int count = candidate_stages(in.model, in.layout, stages);
  prepare_activations(prep, in, stages, count);
}

void set_fits(const MemoryInputs& in, MemoryFit& best) {
  best.fits_gpu = best.gpu_bytes <= in.cluster.gpu_memory_bytes;
  best.fits_host = best.host_bytes_per_node <= in.cluster.host_memory_bytes;
  best.fits_nvme = best.nvme_bytes_per_node <= in.cluster.nvme_bytes;
}

// Evaluates the candidate stages with sinks of type Sink (started from the
// prepared activation side, the state side emitted afresh), keeps the most
// loaded, and calls keep(sink) for it.
template <class Sink, class Keep>
void evaluate_stages(MemoryPrep& prep, const MemoryInputs& in, MemoryFit& best, Keep&& keep) {
  constexpr bool residence_only = requires { Sink::kResidenceOnly; };
  if (!residence_only && !prep.act_totals_valid) {
    for (int i = 0; i < prep.act_count; ++i) {
      prep.act_totals[i] = TotalsSink{};
      prep.act_end_totals[i] = TotalsSink{};
      HeldAtEndSink<TotalsSink> both(prep.act_end_totals[i], &prep.act_totals[i]);
      emit_activations(in, prep, prep.act_stages[i], both);
    }
    prep.act_totals_valid = true;
  }
  const uint64_t node_gpus = in.cluster.gpus_in_node;
  const RuntimeOverheads& ov = in.options.overheads;
  for (int i = 0; i < prep.act_count; ++i) {
    const StageParams sp = candidate_params(prep, i, in.layout);
    const StageExecutor ex =
        stage_executor(in, prep, sp, prep.act_executor_own[i], prep.act_bytes[i][0] - prep.act_end_bytes[i][0]);
    const bool freed = ex.peak.activations_freed;
    Sink sink = [&] {
      if constexpr (residence_only) {
        return Sink(freed ? prep.act_end_bytes[i] : prep.act_bytes[i]);
      } else {
        return Sink(freed ? prep.act_end_totals[i] : prep.act_totals[i]);
      }
    }();
    emit_states_and_buffers(in, prep, sp, ex, sink);
    if constexpr (residence_only) {
      sink.add_bytes(0, fragmentation_bytes(sink.gpu_total(), ov) + fixed_overhead_bytes(in));
    } else {
      emit_overheads(in, sink);
    }
    if (i == 0 || sink.gpu_total() > best.gpu_bytes) {
      best.gpu_bytes = sink.gpu_total();
      best.stage = prep.act_stages[i];
      keep(sink);
    }
    // Host and NVMe per node: the node's GPUs at the most demanding stage's figure.
    best.host_bytes_per_node = std::max(best.host_bytes_per_node, sink.total(Residence::Host) * node_gpus);
    best.nvme_bytes_per_node = std::max(best.nvme_bytes_per_node, sink.total(Residence::Nvme) * node_gpus);
  }
  set_fits(in, best);
}

// The same sums as evaluate_stages<ResidenceTotalsSink> from the prepared
// activation side and a state slot, in the same order (the search's hot path).
MemoryFit fit_from_slot(const MemoryPrep& prep, const StatesCache::StateSlot& slot, const MemoryInputs& in) {
  const uint64_t node_gpus = in.cluster.gpus_in_node;
  const RuntimeOverheads& ov = in.options.overheads;
  MemoryFit best;
  for (int i = 0; i < prep.act_count; ++i) {
    const StatesCache::ExecutorSlot& e = slot.executor[i];
    uint64_t activations = prep.act_bytes[i][0];
    const uint64_t executor = e.present ? executor_bytes(e, prep, i, activations) : 0;
    const uint64_t tensors = activations + slot.bytes[i][0] + executor;
    const uint64_t gpu = tensors + (fragmentation_bytes(tensors, ov) + slot.fixed_overhead_bytes);
    if (i == 0 || gpu > best.gpu_bytes) {
      best.gpu_bytes = gpu;
      best.stage = prep.act_stages[i];
    }
    best.host_bytes_per_node = std::max(best.host_bytes_per_node, (prep.act_bytes[i][1] + slot.bytes[i][1]) * node_gpus);
    best.nvme_bytes_per_node = std::max(best.nvme_bytes_per_node, (prep.act_bytes[i][2] + slot.bytes[i][2]) * node_gpus);
  }
  set_fits(in, best);
  return best;
}

MemoryResult evaluate_with(MemoryPrep& prep, const MemoryInputs& in) {
  prepare(prep, in);
  prepare_activations_if_changed(prep, in);
  MemoryResult best;
  evaluate_stages<TotalsSink>(prep, in, best, [&best](const TotalsSink& s) { best.rank = s.totals(); });
  return best;
}

}  // namespace

MemoryResult evaluate_memory(const MemoryInputs& in) {
  MemoryPrep p;
  return evaluate_with(p, in);
}

MemoryResult MemoryEvaluator::evaluate(const MemoryInputs& in) { return evaluate_with(prep_, in); }

MemoryFit MemoryEvaluator::evaluate_fit(const MemoryInputs& in, Reuse reuse) {
  // Same shape: the shape part, the activation side and the rules' key are
  // as the last call left them; only the state choice is looked up.
  if (reuse == Reuse::Check) {
    prepare(prep_, in);
    prepare_activations_if_changed(prep_, in);
  }
  if (const StatesCache::StateSlot* slot = state_slot(states_, prep_, in, reuse)) return fit_from_slot(prep_, *slot, in);
  prepare_rules(prep_, in.layout);  // a tile factor without a slot: the state side afresh, for this state choice
  MemoryFit best;
  evaluate_stages<ResidenceTotalsSink>(prep_, in, best, [](const ResidenceTotalsSink&) {});
  return best;
}

}  // namespace zp
