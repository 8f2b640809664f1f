// Cluster: N GPUs of one kind in nodes of one preset, and the numbers of it
// the memory model needs, flattened (ClusterShape) for the hot path.
#pragma once

#include <cstdint>

#include "models/catalog.h"
#include "models/hardware.h"

namespace zp {

struct Cluster {
  GpuSpec gpu;
  NodeSpec node;
  uint64_t num_gpus = 1;
  uint64_t gpus_in_node() const { return num_gpus < node.gpus_per_node ? num_gpus : node.gpus_per_node; }
  uint64_t num_nodes() const { return (num_gpus + node.gpus_per_node - 1) / node.gpus_per_node; }
};

// --gpu NAME [--node PRESET] --gpus N: the node defaults to the GPU's own
// default preset. Throws InputError for unknown names or a GPU/node mismatch.
Cluster make_cluster(const Catalog& catalog, const std::string& gpu, const std::string& node, uint64_t num_gpus);

struct ClusterShape {
  uint64_t gpu_memory_bytes = 0;
  uint64_t gpus_in_node = 1;
  uint64_t host_memory_bytes = 0;  // per node
  uint64_t nvme_bytes = 0;         // per node
  bool has_bf16 = true;
};

ClusterShape make_cluster_shape(const Cluster& c);

}  // namespace zp
