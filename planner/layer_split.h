// Pipeline layer splits as a min-max partition: the contiguous split of L
// layers into p stages that minimises the most loaded stage, where stage 0
// also pays for the embedding and the last stage for the output layer. Solved
// as a bottleneck shortest path (Boost.Graph Dijkstra with max in place of +)
// over the DAG whose vertices are (layers assigned, stages used).
#pragma once

#include <cstdint>
#include <vector>

namespace zp {

// layer_cost: one entry per layer; returns layers per stage (sums to L).
// Requires 1 <= stages <= layers.
std::vector<uint64_t> min_max_split(const std::vector<double>& layer_cost, uint32_t stages, double first_extra,
                                    double last_extra);

}  // namespace zp
