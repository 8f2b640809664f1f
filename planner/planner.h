// The planner: searches a SearchSpace for the layouts that fit, ranks them by
// predicted tokens per second (ties, within 0.1%, towards the simpler layout:
// less offload, lower ZeRO stage, fewer pipeline stages, less recompute), and
// keeps the Pareto front of memory headroom against throughput. What cannot
// fit is pruned by the memory model before the time model runs. When nothing
// fits, the result carries the nearest miss. All in-process; the inner loop
// allocates nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "costmodel/cluster.h"
#include "costmodel/collectives.h"
#include "costmodel/memory_model.h"
#include "costmodel/time_model.h"
#include "planner/search_space.h"

namespace zp {

struct Candidate {
  Layout layout;
  MemoryResult memory;
  StepTime time;
  uint64_t headroom_bytes() const;
  uint64_t capacity_bytes = 0;
};

struct PlanQuery {
  ModelShape model;
  Cluster cluster;
  ClusterShape cluster_shape;
  Network network;
  SearchSpace space;
  MemoryOptions options;  // unresolved: per layout
  size_t top_k = 10;
  bool exhaustive = false;  // time every fitting layout (tests: the bound must not change the answer)
  std::function<void(double)> progress;  // fraction done; called rarely; may be empty
};

struct PlanResult {
  std::vector<Candidate> top;     // best first
  std::vector<Candidate> pareto;  // memory headroom vs tokens/s, by headroom
  uint64_t enumerated = 0, valid = 0, fitting = 0, timed = 0;
  uint64_t bounded = 0;  // fitting layouts excluded by the throughput bound without a step-time evaluation
  double seconds = 0;
  // Nearest miss when nothing fits: the layout short by the fewest bytes.
  bool has_nearest_miss = false;
  Candidate nearest_miss;
  uint64_t nearest_short_bytes = 0;
};

// A query for `model` on `cluster` with the search space's defaults: every GPU
// of the cluster, its node size, sequence min(2048, the model's), bf16 where
// the GPU has it (fp16 otherwise), the attention kernels of
// default_attentions. Callers adjust the rest.
PlanQuery make_plan_query(const ModelSpec& model, const Cluster& cluster, const std::string& data_dir);

// The attention kernels worth searching for a framework and precision:
//  - zeroplan's executor: flash alone where its tensor-core kernels take the
//    heads (bf16, head dim a multiple of 16 up to 128); elsewhere its flash
//    kernels run on CUDA cores (compute.h, FlashWarp), so materialised
//    attention, cuBLAS products on tensor cores, is searched beside them;
//  - Megatron-LM and DeepSpeed: FlashAttention-2 (--use-flash-attn), which
//    needs an Ampere or newer GPU (its README's requirement; in the catalog,
//    the GPUs with bf16 tensor cores), else materialised attention alone.
std::vector<Attention> default_attentions(const ModelShape& m, Framework framework, Precision precision, bool has_bf16);

PlanResult plan(const PlanQuery& q);

// The ranking order: true when a is better than b.
bool ranks_before(const Candidate& a, const Candidate& b);

// Why a specific layout is not (or is) among the answers: the failed
// constraint, the memory shortfall, or its rank. One sentence.
std::string why_not(const PlanQuery& q, const Layout& l);

}  // namespace zp
