// Implementation of for_each_layout (a template: the visitor is inlined).
#pragma once

#include <array>
#include <map>
#include <utility>

#include "planner/layer_split.h"

namespace zp {

template <class F>
void for_each_layout(const ModelShape& m, const SearchSpace& s, F&& visit) {
  const std::vector<uint64_t> tps = divisors(s.num_gpus, s.gpus_per_node);
  // The state choices of one shape, innermost, as a flat list.
  const std::vector<StateChoice> single_stage_states = state_choices(s, false);
  const std::vector<StateChoice> pipeline_states = state_choices(s, true);
  uint64_t shape_id = 0;
  // The uneven split offered beside the default one, per (pp, recompute),
  // worked out on first use; keyed by the pair, not indexed by the layer
  // count, which a model file may make as large as 64 bits allow.
  std::map<std::pair<uint64_t, int>, StageSplit> splits;
  auto uneven_for = [&](uint64_t pp, int rc) {
    auto [it, fresh] = splits.try_emplace({pp, rc});
    if (fresh) it->second = planner_split(m, static_cast<uint32_t>(pp), static_cast<Recompute>(rc), s.seq_len);
    return it->second;
  };
  for (uint64_t tp : tps) {
    if (m.heads % tp || m.kv_heads % tp || m.ffn % tp || m.hidden % tp) continue;
    const uint64_t rest = s.num_gpus / tp;
    for (uint64_t pp : divisors(rest, m.layers)) {
      const uint64_t dp = rest / pp;
      for (uint64_t ep = 1; ep <= dp; ep *= 2) {
        if (ep > 1 && (m.experts == 0 || m.experts % ep || dp % ep)) break;
        for (uint32_t vpp : {1u, 2u, 4u}) {
          if (vpp > 1 && (pp < 2 || m.layers % (pp * vpp))) continue;
          for (uint32_t mb : s.micro_batches) {
            // Accumulation steps: fixed by the global batch, or a few per stage.
            std::array<uint32_t, 8> gas{};
            int n_ga = 0;
            if (s.global_batch > 0) {
              const uint64_t per_step = dp * mb;
              if (s.global_batch % per_step) continue;
              gas[n_ga++] = static_cast<uint32_t>(s.global_batch / per_step);
            } else {
              for (uint32_t k : s.accumulation_per_stage) {
                if (n_ga < 8) gas[n_ga++] = static_cast<uint32_t>(pp * k);
              }
            }
            for (int gi = 0; gi < n_ga; ++gi) {
              const uint32_t ga = gas[gi];
              if (vpp > 1 && ga % pp) continue;
              // Shape-changing choices outside the state choices, so the
              // evaluators' per-shape work is reused; the attention kernel and
              // sequence parallelism outermost (the step time's per-shape part
              // depends on them, not on recompute or the split), then
              // recompute, then the split.
              for (Attention attention : s.attentions) {
              for (int sp = 0; sp < (tp > 1 ? 2 : 1); ++sp) {
              for (int rc = 0; rc < 3; ++rc) {
                if (static_cast<Recompute>(rc) == Recompute::Selective && attention == Attention::Flash) continue;
                const StageSplit uneven = s.uneven_splits && vpp == 1 && pp >= 2 ? uneven_for(pp, rc) : StageSplit{};
                for (int split = 0; split < (uneven.first || uneven.last ? 2 : 1); ++split) {
                  ++shape_id;
                  // The shape's fields once; the state choices below set the rest.
                  Layout l;
                  l.tp = static_cast<uint32_t>(tp);
                  l.pp = static_cast<uint32_t>(pp);
                  l.dp = static_cast<uint32_t>(dp);
                  l.ep = static_cast<uint32_t>(ep);
                  l.vpp = vpp;
                  l.schedule = vpp > 1 ? Schedule::Interleaved : Schedule::OneFOneB;
                  l.micro_batch = mb;
                  l.grad_accum = ga;
                  l.seq_len = s.seq_len;
                  l.recompute = static_cast<Recompute>(rc);
                  l.sequence_parallel = sp == 1;
                  l.first_stage_layers = split ? uneven.first : 0;
                  l.last_stage_layers = split ? uneven.last : 0;
                  l.precision = s.precision;
                  l.framework = s.framework;
                  l.attention = attention;
                  for (const StateChoice& c : pp > 1 ? pipeline_states : single_stage_states) {
                    l.zero_stage = c.zero_stage;
                    l.offload_optimizer = c.offload_optimizer;
                    l.offload_param = c.offload_param;
                    l.tile_factor = c.tile_factor;
                    l.checkpoints_to_cpu = c.tiled && l.recompute == Recompute::Full;
                    l.delayed_update = s.delayed_update && c.offload_optimizer != Offload::None;
                    visit(l, shape_id);
                  }
                }
              }
              }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace zp
