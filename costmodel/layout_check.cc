#include "costmodel/layout_check.h"

#include <algorithm>

namespace zp {
namespace {

std::string n(uint64_t v) { return std::to_string(v); }

}  // namespace

std::string check_layout(const ModelShape& m, const Layout& l, const ClusterShape& c, uint64_t num_gpus) {
  std::string why = check_layout_shape(m, l, c, num_gpus);
  if (!why.empty()) return why;
  const char* states = check_layout_states(l);
  return states ? states : "";
}

std::string check_layout_shape(const ModelShape& m, const Layout& l, const ClusterShape& c, uint64_t num_gpus) {
  if (l.dp == 0 || l.tp == 0 || l.pp == 0 || l.vpp == 0 || l.ep == 0) return "dp, tp, pp, vpp and ep must be at least 1";
  if (l.micro_batch == 0) return "--micro-batch must be at least 1";
  if (l.grad_accum == 0) return "--grad-accum must be at least 1";
  if (l.seq_len == 0) return "--seq must be at least 1";
  if (l.world() != num_gpus) {
    return "dp x tp x pp = " + n(l.dp) + " x " + n(l.tp) + " x " + n(l.pp) + " = " + n(l.world()) + " does not equal --gpus " +
           n(num_gpus);
  }
  if (m.heads % l.tp != 0) return "tp " + n(l.tp) + " does not divide the " + n(m.heads) + " attention heads";
  if (m.kv_heads % l.tp != 0) return "tp " + n(l.tp) + " does not divide the " + n(m.kv_heads) + " KV heads";
  if (m.ffn % l.tp != 0) return "tp " + n(l.tp) + " does not divide the FFN size " + n(m.ffn);
  if (m.hidden % l.tp != 0) return "tp " + n(l.tp) + " does not divide the hidden size " + n(m.hidden);
  if (l.pp > m.layers) return "pp " + n(l.pp) + " is larger than the " + n(m.layers) + " layers";
  if (l.first_stage_layers || l.last_stage_layers) {
    if (l.pp < 2) return "an uneven pipeline split (first/last stage layers) needs pp >= 2";
    if (l.schedule == Schedule::Interleaved) return "an uneven pipeline split cannot be combined with interleaving";
    const uint64_t ends = uint64_t{l.first_stage_layers} + l.last_stage_layers;
    const uint32_t between = l.pp - (l.first_stage_layers ? 1 : 0) - (l.last_stage_layers ? 1 : 0);
    if (ends > m.layers || (between == 0 && ends != m.layers) || (between > 0 && ((m.layers - ends) % between != 0 ||
                                                                                  m.layers - ends < between))) {
      return "first/last stage layers " + n(l.first_stage_layers) + "/" + n(l.last_stage_layers) + " leave " +
             n(ends > m.layers ? 0 : m.layers - ends) + " of the " + n(m.layers) + " layers for " + n(between) +
             " stages between: they must divide evenly, at least one each (Megatron-Core's rule)";
    }
  }
  if (l.sequence_parallel && l.tp > 1 && l.seq_len % l.tp != 0) {
    return "sequence parallel needs tp " + n(l.tp) + " to divide --seq " + n(l.seq_len);
  }
  if (l.schedule == Schedule::Interleaved) {
    if (l.pp < 2 || l.vpp < 2) return "the interleaved schedule needs pp >= 2 and vpp >= 2";
    if (m.layers % (uint64_t{l.pp} * l.vpp) != 0) {
      return "interleaving needs pp x vpp = " + n(uint64_t{l.pp} * l.vpp) + " to divide the " + n(m.layers) + " layers";
    }
    if (l.grad_accum % l.pp != 0) {
      return "interleaving needs the " + n(l.grad_accum) + " micro-batches (--grad-accum) to be a multiple of pp " + n(l.pp);
    }
  } else if (l.vpp > 1) {
    return "vpp > 1 needs --schedule interleaved";
  }
  if (l.ep > 1) {
    if (m.experts == 0) return "ep > 1 needs a mixture-of-experts model";
    if (m.experts % l.ep != 0) return "ep " + n(l.ep) + " does not divide the " + n(m.experts) + " experts";
    if (l.dp % l.ep != 0) return "ep " + n(l.ep) + " must divide dp " + n(l.dp) + " (expert parallelism is carved out of data parallelism)";
  }
  if (m.position == PositionKind::Learned && l.seq_len > m.max_seq) {
    return "--seq " + n(l.seq_len) + " exceeds the model's " + n(m.max_seq) + " learned positions";
  }
  if (l.precision == Precision::Bf16 && !c.has_bf16) return "this GPU has no bf16 support; use --precision fp16";
  // Overflow guard: the largest products the model forms must stay below 2^62.
  const uint64_t widest = std::max<uint64_t>({m.vocab, m.ffn * 2 * (m.top_k ? m.top_k : 1), m.hidden,
                                              m.heads * uint64_t{l.seq_len}});
  uint64_t product = 1;
  bool overflow = false;
  for (uint64_t factor : {uint64_t{l.micro_batch}, uint64_t{l.seq_len}, widest, uint64_t{8}, m.layers,
                          uint64_t{std::max(l.grad_accum, l.vpp)}, uint64_t{l.vpp}}) {
    overflow |= __builtin_mul_overflow(product, factor, &product);
  }
  uint64_t states = 0;
  overflow |= __builtin_mul_overflow(m.params.total, uint64_t{24}, &states);
  if (overflow || product >= (uint64_t{1} << 62) || states >= (uint64_t{1} << 62)) {
    return "the layout's byte counts overflow 64 bits (micro-batch x sequence x width is too large)";
  }
  return "";
}

const char* check_layout_states(const Layout& l) {
  if (l.zero_stage > 3) return "--zero must be 0, 1, 2 or 3";
  if (l.tile_factor == 0) return "--tile-factor must be at least 1";
  if (l.offload_param != Offload::None && l.zero_stage != 3) return "parameter offload needs ZeRO stage 3";
  if (l.offload_optimizer != Offload::None && l.zero_stage == 0) return "optimizer offload needs ZeRO stage 1 or higher";
  if (l.recompute != Recompute::Full && (l.recompute_layers > 0 || l.partition_activations || l.checkpoints_to_cpu)) {
    return "--recompute-layers, --partition-activations and --checkpoints-to-cpu need --recompute full";
  }
  if (l.framework == Framework::Megatron) {
    if (l.zero_stage > 1) return "Megatron-LM has no ZeRO stage 2/3 (stage 1 is its distributed optimizer); use --framework deepspeed or zeroplan";
    if (l.offload_optimizer != Offload::None) return "optimizer offload is modelled for DeepSpeed and zeroplan, not Megatron-LM";
  }
  if (l.framework == Framework::DeepSpeed && l.pp > 1 && l.zero_stage > 1) {
    return "DeepSpeed's pipeline engine supports ZeRO stage 0 or 1 only (deepspeed/runtime/pipe/engine.py)";
  }
  return nullptr;
}

}  // namespace zp
