// The executor's buffers beside the cost model's rows, for the executor
// tests: the layout the CPU executor runs (fp32 or bf16, zeroplan accounting,
// materialised attention, no NCCL or CUDA overheads), the rows of one of its
// ranks, and the comparison: model states byte for byte, the activation side
// (activations, recompute workspace, logits) as a relative difference.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "costmodel/cluster.h"
#include "costmodel/memory_model.h"
#include "costmodel/model_shape.h"
#include "executor/tracking_allocator.h"
#include "models/model_spec.h"

namespace zp::test {

inline Layout executor_layout(uint32_t dp, uint32_t tp, uint32_t pp, uint32_t micro_batch, uint32_t grad_accum,
                              uint32_t seq, Recompute recompute, Precision precision = Precision::Fp32) {
  Layout l;
  l.dp = dp;
  l.tp = tp;
  l.pp = pp;
  l.micro_batch = micro_batch;
  l.grad_accum = grad_accum;
  l.seq_len = seq;
  l.recompute = recompute;
  l.precision = precision;
  l.framework = Framework::Zeroplan;
  l.attention = Attention::Materialized;  // the CPU kernels keep the softmax output
  l.emulated = true;
  return l;
}

// The rows of a stage at its peak, with the activation side the stage holds
// while its micro-batches' activations are live (a pipeline rank's peak may
// be its step's end, when they are gone; the checks below compare the
// activations at their own peak).
inline MemoryTotals executor_rows(const ModelSpec& spec, const Layout& l, uint32_t stage) {
  const ModelShape shape = make_shape(spec);
  const MemoryInputs in{shape, l, ClusterShape{}, resolve_options({}, l)};
  RowsSink rows, activations;
  memory_rows_for_stage(in, stage, rows);
  activation_rows_for_stage(in, stage, activations);
  MemoryTotals t = rows.totals();
  for (Component c : {Component::Activations, Component::RecomputeWorkspace, Component::Logits}) {
    t.bytes[static_cast<int>(Residence::Gpu)][static_cast<int>(c)] = activations.totals().at(Residence::Gpu, c);
  }
  return t;
}

inline double activation_side(const MemoryTotals& t) {
  return static_cast<double>(t.at(Residence::Gpu, Component::Activations) +
                             t.at(Residence::Gpu, Component::RecomputeWorkspace) + t.at(Residence::Gpu, Component::Logits));
}

// Checks every model-state component on the device (and in `host`, when
// given) against the rows, and the activation side within 2%: what the
// device holds now, or `measured_activation` when >= 0 (a pipeline's peak).
// Returns the activation side's relative difference.
inline double check_against_rows(const TrackingAllocator& device, const TrackingAllocator* host, const MemoryTotals& want,
                                 double measured_activation = -1) {
  for (Component c : {Component::Weights, Component::Gradients, Component::MainGradients, Component::MasterWeights,
                      Component::OptimizerStates}) {
    CAPTURE(std::string(to_string(c)));
    CHECK(device.current_bytes(c) == want.at(Residence::Gpu, c));
    if (host) CHECK(host->current_bytes(c) == want.at(Residence::Host, c));
  }
  // The host's staging: offloaded ZeRO-2/3's gradient slots, the delayed
  // update's weight partition.
  if (host) {
    CHECK(host->current_bytes(Component::OffloadStaging) == want.at(Residence::Host, Component::OffloadStaging));
  }
  const double measured = measured_activation >= 0
                              ? measured_activation
                              : static_cast<double>(device.current_bytes(Component::Activations) +
                                                    device.current_bytes(Component::RecomputeWorkspace) +
                                                    device.current_bytes(Component::Logits));
  const double predicted = activation_side(want);
  CAPTURE(measured);
  CAPTURE(predicted);
  CHECK(std::abs(measured - predicted) <= 0.02 * predicted);
  return std::abs(measured - predicted) / predicted;
}

// At the device's peak: the operator workspace, the buckets and ZeRO-3's
// gathered parameters byte for byte as the rows say, and the whole peak
// within 1% of the rows' sum (the logits' per-token loss row is the
// difference), both without the backend's scratch (the rows hold the CUDA
// backend's, the CPU backend keeps its own). Returns the peak's difference.
inline double check_peak_against_rows(const TrackingAllocator& device, const MemoryTotals& want) {
  const auto& at_peak = device.at_peak();
  for (Component c : {Component::Workspace, Component::Buckets, Component::Zero3Gathered}) {
    CAPTURE(std::string(to_string(c)));
    CHECK(at_peak[static_cast<int>(c)] == want.at(Residence::Gpu, c));
  }
  double predicted = 0;
  for (int c = 0; c < kNumComponents; ++c) {
    const auto component = static_cast<Component>(c);
    if (is_runtime_overhead(component) || component == Component::BackendScratch) continue;
    predicted += static_cast<double>(want.at(Residence::Gpu, component));
  }
  const double measured =
      static_cast<double>(device.peak_bytes() - at_peak[static_cast<int>(Component::BackendScratch)]);
  CAPTURE(measured);
  CAPTURE(predicted);
  CHECK(std::abs(measured - predicted) <= 0.01 * predicted);
  return std::abs(measured - predicted) / predicted;
}

}  // namespace zp::test
