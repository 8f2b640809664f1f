// The layout flags shared by `explain` (and, later, fit/compare/emit/run):
// model, cluster and every Layout field, registered on a CLI11 subcommand and
// turned into a checked Job. Flag values are validated by CLI11 (one-line
// messages naming the flag); a layout that cannot run is an InputError
// carrying check_layout's sentence.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "costmodel/cluster.h"
#include "costmodel/collectives.h"
#include "costmodel/layout.h"
#include "costmodel/memory_options.h"
#include "costmodel/model_shape.h"
#include "models/catalog.h"
#include "models/model_spec.h"

namespace zp {

struct LayoutFlags {
  std::string model, gpu, node;
  uint64_t gpus = 1;
  uint32_t dp = 0, tp = 1, pp = 1, vpp = 1, ep = 1;
  uint32_t first_stage_layers = 0, last_stage_layers = 0;
  bool sp = false;
  uint32_t micro_batch = 1, grad_accum = 0, seq = 0;
  uint64_t global_batch = 0;
  int zero = 0;
  std::string offload_optimizer = "none", offload_param = "none", recompute = "none";
  uint32_t recompute_layers = 0;
  bool partition_activations = false, checkpoints_to_cpu = false;
  // precision and attention empty: bf16 and flash for the layout given; for
  // --rank, the fit search's own defaults (plan_flags.h), so `explain --rank
  // N` is `fit`'s N-th layout.
  std::string precision, optimizer = "adam", framework = "zeroplan", schedule = "", attention;
  std::string dropout = "model";
  bool fp32_grad_accum = false, emulated = false;
  uint32_t tile_factor = 1;
  double fragmentation_pct = 0;
  uint64_t reduce_bucket = 0;
  std::string overlap_comm = "default";
  std::string dp_overlap = "default";
  bool tp_overlap = false, delayed_update = false;
  size_t rank = 0;  // > 0: take the layout ranked so by the fit search (other layout flags ignored)
};

struct Job {
  ModelSpec model;
  ModelShape shape;
  Cluster cluster;
  ClusterShape cluster_shape;
  Layout layout;
  MemoryOptions options;  // resolved
  Network network;        // topology summary and efficiency curves for the time model
};

// model_required: whether --model and --gpu must be given (validate takes a matrix file instead).
void add_layout_flags(CLI::App* cmd, LayoutFlags& f, bool model_required = true);
Job make_job(const LayoutFlags& f, const Catalog& catalog);

}  // namespace zp
