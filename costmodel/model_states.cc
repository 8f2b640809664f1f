#include "costmodel/model_states.h"

namespace zp {

StateRules state_rules(const Layout& l) {
  StateRules r;
  auto add = [&r](Component c, Dtype d, uint8_t shard_from, bool optimizer_side) {
    r.rules[r.count++] = StateRule{c, d, shard_from, optimizer_side};
  };
  const bool fp32 = l.precision == Precision::Fp32;
  const Dtype low = l.precision == Precision::Fp16 ? Dtype::Fp16 : fp32 ? Dtype::Fp32 : Dtype::Bf16;
  const bool adam = l.optimizer == Optimizer::Adam;
  // Adam keeps two fp32 moments (8 bytes), SGD with momentum one (4): both as
  // one row of fp32 "elements" scaled below by emitting twice for Adam.
  switch (l.framework) {
    case Framework::Zeroplan: {
      add(Component::Weights, low, 3, false);
      add(Component::Gradients, (fp32 || l.fp32_grad_accum) ? Dtype::Fp32 : low, 2, false);
      if (!fp32) add(Component::MasterWeights, Dtype::Fp32, 1, true);
      if (l.offload_optimizer != Offload::None) add(Component::MainGradients, Dtype::Fp32, 1, true);
      break;
    }
    case Framework::DeepSpeed: {
      add(Component::Weights, low, 3, false);
      if (l.zero_stage < 3) add(Component::Gradients, low, 2, false);
      if (!fp32 && !(l.precision == Precision::Fp16 && l.zero_stage == 0)) {
        add(Component::MainGradients, Dtype::Fp32, 1, true);
      }
      if (!fp32) add(Component::MasterWeights, Dtype::Fp32, 1, true);
      break;
    }
    case Framework::Megatron: {
      add(Component::Weights, low, 4, false);
      if (l.precision == Precision::Fp16) {
        add(Component::Gradients, Dtype::Fp16, 4, false);
        add(Component::MainGradients, Dtype::Fp32, 1, true);
      } else {
        add(Component::MainGradients, Dtype::Fp32, 4, true);
      }
      if (!fp32) add(Component::MasterWeights, Dtype::Fp32, 1, true);
      break;
    }
  }
  // Optimizer states: fp32 moments, always partitioned from stage 1.
  add(Component::OptimizerStates, Dtype::Fp32, 1, true);
  if (adam) {
    // The second Adam moment (variance) is a second row of the same size.
    r.rules[r.count++] = StateRule{Component::OptimizerStates, Dtype::Fp32, 1, true};
  }
  return r;
}

double state_bytes_per_param(const Layout& l, uint32_t dp) {
  const StateBytesPerParam b = state_bytes_by_residence(l, state_rules(l));
  double bytes = 0;
  for (int r = 0; r < kNumResidences; ++r) {
    bytes += static_cast<double>(b.unsharded[r]) + static_cast<double>(b.sharded[r]) / dp;
  }
  return bytes;
}

PlacedStates place_states(const Layout& l, const StateRules& r) {
  PlacedStates out;
  for (int i = 0; i < r.count; ++i) {
    const StatePlacement p = place_state(l, r.rules[i]);
    if (!p.kept) continue;
    out.entries[out.count++] = {r.rules[i].component, p.where, r.rules[i].dtype, p.sharded};
  }
  return out;
}

StateBytesPerParam state_bytes_by_residence(const Layout& l, const StateRules& r) {
  StateBytesPerParam b;
  for (int i = 0; i < r.count; ++i) {
    const StatePlacement p = place_state(l, r.rules[i]);
    if (!p.kept) continue;
    (p.sharded ? b.sharded : b.unsharded)[static_cast<int>(p.where)] += dtype_bytes(r.rules[i].dtype);
  }
  return b;
}

uint64_t optimizer_side_bytes_per_param(const Layout& l) {
  const StateRules r = state_rules(l);
  uint64_t bytes = 0;
  for (int i = 0; i < r.count; ++i) {
    if (r.rules[i].optimizer_side) bytes += dtype_bytes(r.rules[i].dtype);
  }
  return bytes;
}

}  // namespace zp
