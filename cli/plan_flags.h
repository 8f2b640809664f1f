// Flags shared by the planning subcommands (fit, min-gpus, max-model,
// compare, emit --rank, explain --rank): the question, not a layout.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "models/catalog.h"
#include "planner/planner.h"

namespace zp {

struct PlanFlags {
  std::string model = "llama-3.1-8b", gpu = "H100-80GB", node;
  uint64_t gpus = 8;
  uint32_t seq = 0;
  uint64_t global_batch = 0;
  std::string framework = "zeroplan";
  std::string precision;           // empty: bf16 where the GPU has it, else fp16
  std::string attention = "auto";  // auto (default_attentions) | flash | materialized | any (both searched)
  bool no_offload = false, no_nvme = false, delayed_update = false;
  size_t top_k = 10;
  double tokens = 0;
  double reserve_pct = 5;  // GPU memory held back from every layout
};

// model_required: whether --model/--gpu must be given (fit has defaults: the built-in question).
void add_plan_flags(CLI::App* cmd, PlanFlags& f, bool model_required);
// Builds the query for `f` with `num_gpus` GPUs (throws InputError).
PlanQuery make_query(const PlanFlags& f, const Catalog& catalog, uint64_t num_gpus);
PlanQuery make_query_for_model(const PlanFlags& f, const Catalog& catalog, const ModelSpec& model, uint64_t num_gpus);
// Runs plan() with a progress line on stderr when the search passes a second on a terminal.
PlanResult plan_with_progress(PlanQuery q);

}  // namespace zp
