// Collective and point-to-point times: an alpha-beta model of NCCL's ring and
// tree algorithms over the group's real links.
//
// Bus-bandwidth factors (nccl-tests doc/PERFORMANCE.md): a ring all-reduce
// moves 2(n-1)/n of the buffer through every rank's link, all-gather and
// reduce-scatter (n-1)/n; all-to-all (n-1)/n. A group inside one node runs
// at the NVLink/NVSwitch bandwidth; a group spanning nodes runs
// hierarchically (reduce-scatter inside each node, the inter-node collective
// on 1/k of the data over the NICs, all-gather inside the node), as NCCL's
// rings and trees effectively do. Latency: ring 2(n-1) steps, tree 2 log2(n);
// NCCL picks the faster, so do we. Achieved bus bandwidth is the link's
// bandwidth times the efficiency curve's busbw fraction.
//
// Placement (Megatron-Core parallel_state order tp, ep, dp, pp; tp innermost)
// decides how many members of a group share a node.
#pragma once

#include <cstdint>

#include "costmodel/efficiency.h"
#include "costmodel/layout.h"
#include "costmodel/topology.h"

namespace zp {

enum class Dimension : uint8_t { Tensor, Expert, Data, ExpertData, Pipeline };

struct GroupSpan {
  uint64_t size = 1;
  uint64_t per_node = 1;   // members sharing a node
  uint64_t nodes = 1;      // nodes the group touches
  bool cross_leaf = false;
  bool operator==(const GroupSpan&) const = default;
};

GroupSpan group_span(const Layout& l, Dimension d, const LinkSummary& links);

struct Network {
  LinkSummary links;
  EfficiencyCurves eff;
};

// A cluster's network: its topology summary and its GPU's efficiency curves
// (read from data_dir/efficiency). Throws InputError on a bad curves file.
Network make_network(const Cluster& c, const std::string& data_dir);

double all_reduce_s(double bytes, const GroupSpan& g, const Network& net);
double all_gather_s(double bytes, const GroupSpan& g, const Network& net);      // bytes: the gathered (full) size
double reduce_scatter_s(double bytes, const GroupSpan& g, const Network& net);  // bytes: the full input size
double all_to_all_s(double bytes, const GroupSpan& g, const Network& net);      // bytes: each rank's send buffer
double p2p_s(double bytes, bool inter_node, const Network& net);

// Bytes one rank sends in a ring collective of a `bytes` buffer over n ranks.
inline double ring_all_reduce_bytes(double bytes, uint64_t n) { return n > 1 ? 2.0 * (n - 1) / n * bytes : 0; }
inline double ring_all_gather_bytes(double bytes, uint64_t n) { return n > 1 ? 1.0 * (n - 1) / n * bytes : 0; }

}  // namespace zp
