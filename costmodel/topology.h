// The cluster as a graph (Boost.Graph): GPUs, each node's NVSwitch (or PCIe
// host bridge), NICs, leaf and spine switches, every edge with its bandwidth
// per direction and latency. summarize_topology() reads off the bottleneck
// bandwidth and latency of the three kinds of GPU-to-GPU path a collective
// uses: inside a node, across nodes under one leaf switch, across leaves
// (widest path, i.e. the largest minimum edge bandwidth, by Dijkstra with
// (max, min) in place of (min, +)). NIC sharing is read off the graph too: a
// GPU's inter-node share is its NIC's bandwidth divided by the GPUs behind it,
// since every GPU of a node communicates at once in data-parallel collectives.
#pragma once

#include <cstdint>

#include "costmodel/cluster.h"
#include "costmodel/efficiency.h"

namespace zp {

struct TopologyOptions {
  uint64_t nodes_per_leaf = 32;         // a DGX SuperPOD scalable unit
  double leaf_oversubscription = 1.0;   // downlink : uplink bandwidth; 1 = full bisection
  double nvlink_latency_s = 1e-6;       // per hop
  double pcie_latency_s = 2e-6;
  double nic_latency_s = 2e-6;
  double switch_latency_s = 1e-6;
};

struct LinkSummary {
  uint64_t gpus_per_node = 1;
  uint64_t nodes_per_leaf = 32;
  double intra_bytes_per_s = 0;  // per GPU, per direction, between two GPUs of a node
  double intra_latency_s = 0;
  double inter_bytes_per_s = 0;  // per GPU share, between nodes under one leaf
  double inter_latency_s = 0;
  double cross_leaf_bytes_per_s = 0;  // per GPU share, between leaves
  double cross_leaf_latency_s = 0;
  uint64_t vertices = 0, edges = 0;  // size of the graph built
};

LinkSummary summarize_topology(const Cluster& c, const TopologyOptions& o = {});

}  // namespace zp
