#include "costmodel/cluster.h"

#include "models/input_error.h"
#include "models/name_suggest.h"

namespace zp {

Cluster make_cluster(const Catalog& catalog, const std::string& gpu, const std::string& node, uint64_t num_gpus) {
  if (num_gpus == 0) throw InputError("--gpus: expected a positive number of GPUs");
  Cluster c;
  c.gpu = catalog.gpu(gpu);
  std::string node_name = node.empty() ? c.gpu.default_node : node;
  if (node_name.empty()) throw InputError("--node: GPU '" + c.gpu.name + "' has no default node preset; name one");
  c.node = catalog.node(node_name);
  if (to_lower(c.node.gpu) != to_lower(c.gpu.name)) {
    throw InputError("--node " + c.node.name + ": holds " + c.node.gpu + " GPUs, not " + c.gpu.name);
  }
  c.num_gpus = num_gpus;
  if (num_gpus > c.node.gpus_per_node && num_gpus % c.node.gpus_per_node != 0) {
    throw InputError("--gpus " + std::to_string(num_gpus) + ": expected a multiple of the " +
                     std::to_string(c.node.gpus_per_node) + " GPUs per " + c.node.name + " node");
  }
  return c;
}

ClusterShape make_cluster_shape(const Cluster& c) {
  ClusterShape s;
  s.gpu_memory_bytes = c.gpu.memory_bytes;
  s.gpus_in_node = c.gpus_in_node();
  s.host_memory_bytes = c.node.host_memory_bytes;
  s.nvme_bytes = c.node.nvme_bytes;
  s.has_bf16 = c.gpu.bf16_dense_flops > 0;
  return s;
}

}  // namespace zp
