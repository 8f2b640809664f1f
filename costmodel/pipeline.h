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
//    Korthikanti et al. 2022 Sec. 4.2.3. At that peak (the first steady-
//    state forward) nothing has gone backward yet, and pass k ran chunk
//    (k mod p v) / p (Megatron's schedule table, p micro-batches a group):
//    the last rank holds one pass of its last chunk (its output layer's
//    tensors once), the first rank 2p - 1 of its first (token ids).
// With pp = 1 the micro-batches of gradient accumulation run one after
// another: one in flight.
#pragma once

#include <cstdint>

#include "costmodel/layout.h"

namespace zp {

struct InFlight {
  uint64_t units = 1;            // micro-batches (or chunk passes when interleaved) in flight
  uint64_t layers_per_unit = 1;  // layers of one unit
  // Micro-batches whose model input (token ids; the first stage) and whose
  // output layer (the last stage) are held at the peak: the units, or under
  // interleaving the passes of the first and of the last chunk among them.
  uint64_t first_chunk_microbatches = 1, last_chunk_microbatches = 1;
};

InFlight in_flight(const Layout& l, uint64_t layers_on_this_stage, uint64_t total_layers, uint32_t stage);

// Whether a rank of the interleaved schedule holds a forward's output over a
// backward: zeroplan's executor, like Megatron-LM's interleaved schedule
// without overlapped communication, runs a steady-state pass's forward and
// backward and then one exchange (send_forward_backward_recv_forward_backward
// in core/pipeline_parallel/schedules.py), so the output waits for it unless
// it ends the model. Ranks with no steady state (warm-up 2(p-r-1)+(v-1)p
// covering all m v passes) never do. The last rank's does not count: its
// last chunk's passes go forward and backward in the same steady-state step
// (pass (v-1)p + i forward and pass i backward are the same micro-batch of
// that chunk), so while an earlier chunk's backward holds an output, none
// of them is in flight; its peak is its last chunk's backward, the same
// number of passes in flight, one with the output layer (its final-norm
// input alone [To,h], then the logits) in place of the held output.
// GPipe and 1F1B send a forward's output before the next backward.
bool holds_output_over_backward(const Layout& l, uint32_t stage);

}  // namespace zp
