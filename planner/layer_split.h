// Pipeline layer splits as a min-max partition: the contiguous split of L
// layers into p stages that minimises the most loaded stage, where stage 0
// also pays for the embedding and the last stage for the output layer. Solved
// as a bottleneck shortest path (Boost.Graph Dijkstra with max in place of +)
// over the DAG whose vertices are (layers assigned, stages used).
#pragma once

#include <cstdint>
#include <vector>

#include "costmodel/layout.h"
#include "costmodel/model_shape.h"

namespace zp {

// layer_cost: one entry per layer; returns layers per stage (sums to L).
// Requires 1 <= stages <= layers.
std::vector<uint64_t> min_max_split(const std::vector<double>& layer_cost, uint32_t stages, double first_extra,
                                    double last_extra);

// An uneven split Megatron-Core can run (first and last stage layers, the
// stages between splitting the rest evenly: --decoder-first/last-pipeline-
// num-layers) whose most loaded stage, in FLOPs per micro-batch with the
// output layer on the last stage, is the lowest; ties go to the split
// nearest the min-max partition above. {0, 0} when the default split (L/pp,
// the remainder on the last stages) is already as good.
struct StageSplit {
  uint32_t first = 0, last = 0;
};
StageSplit best_expressible_split(uint64_t layers, uint32_t stages, double layer_cost, double first_extra,
                                  double last_extra);

// The split the planner offers beside the default one for `pp` stages:
// per-layer forward + backward (+ recompute) FLOPs against the output layer's.
StageSplit planner_split(const ModelShape& m, uint32_t pp, Recompute recompute, uint32_t seq_len);

}  // namespace zp
