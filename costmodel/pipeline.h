// Pipeline schedules: how many micro-batches (or model chunks) a stage keeps
// activations for at its peak.
//  - GPipe (Huang et al. 2019): all m forward passes finish before the first
//    backward: m micro-batches in flight on every stage.
//  - 1F1B (Narayanan et al. 2021, PipeDream-Flush): stage i (0-based) of p
//    runs p - i warm-up forwards, so it holds min(p - i, m).
//  - Interleaved 1F1B with v chunks per rank: rank i warms up with
//    2(p - i - 1) + (v - 1)p chunk-forwards and holds one more in the steady
//    state (Megatron-LM core/pipeline_parallel/schedules.py,
//    forward_backward_pipelining_with_interleaving), at most m*v; each chunk
//    has L/(p v) layers. For rank 0 this is L(1 + (p-1)/(p v)) layers' worth,
//    Korthikanti et al. 2022 Sec. 4.2.3.
// With pp = 1 the micro-batches of gradient accumulation run one after
// another: one in flight.
#pragma once

#include <cstdint>

#include "costmodel/layout.h"

namespace zp {

struct InFlight {
  uint64_t units = 1;            // micro-batches (or chunk passes when interleaved) in flight
  uint64_t layers_per_unit = 1;  // layers of one unit
  uint64_t microbatches = 1;     // distinct micro-batches whose inputs/outputs are held
};

InFlight in_flight(const Layout& l, uint64_t layers_on_this_stage, uint64_t total_layers, uint32_t stage);

}  // namespace zp
