#include "cli/plan_flags.h"

#include <chrono>
#include <cstdio>
#include <unistd.h>

#include "models/input_error.h"

namespace zp {

void add_plan_flags(CLI::App* cmd, PlanFlags& f, bool model_required) {
  auto* model = cmd->add_option("--model", f.model, "Catalog name, zeroplan model JSON or Hugging Face config.json");
  auto* gpu = cmd->add_option("--gpu", f.gpu, "GPU name from `zeroplan gpus`");
  if (model_required) {
    model->required();
    gpu->required();
  }
  cmd->add_option("--gpus", f.gpus, "Number of GPUs")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20));
  cmd->add_option("--node", f.node, "Node preset (default: the GPU's own)");
  cmd->add_option("--seq", f.seq, "Sequence length (default: 2048, or the model's maximum if smaller)")
      ->check(CLI::Range(1u, 1u << 24));
  cmd->add_option("--global-batch", f.global_batch, "Global batch in sequences (default: free)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  cmd->add_option("--framework", f.framework, "zeroplan|deepspeed|megatron")
      ->check(CLI::IsMember({"zeroplan", "deepspeed", "megatron"}));
  cmd->add_option("--precision", f.precision, "bf16|fp16|fp32 (default: bf16, or fp16 on a GPU without bf16)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_option("--attention", f.attention,
                  "auto|flash|materialized|any: the attention kernel(s) searched; auto: flash, and materialized where "
                  "flash runs on CUDA cores or needs a newer GPU (selective recompute is searched with materialized only)")
      ->check(CLI::IsMember({"auto", "flash", "materialized", "any"}));
  cmd->add_flag("--no-offload", f.no_offload, "Leave CPU and NVMe offload out of the search");
  cmd->add_flag("--no-nvme", f.no_nvme, "Leave NVMe offload out of the search");
  cmd->add_flag("--delayed-update", f.delayed_update, "Offloaded layouts use ZeRO-Offload's delayed parameter update");
  cmd->add_option("--top", f.top_k, "How many layouts to list")->check(CLI::Range(size_t{1}, size_t{100}));
  cmd->add_option("--reserve-pct", f.reserve_pct, "GPU memory held in reserve, % (allocator fragmentation, spikes)")
      ->check(CLI::Range(0.0, 90.0));
  cmd->add_option("--tokens", f.tokens, "Training budget in tokens: report the time to train it")
      ->check(CLI::Range(0.0, 1e18));
}

PlanQuery make_query_for_model(const PlanFlags& f, const Catalog& catalog, const ModelSpec& model, uint64_t num_gpus) {
  PlanQuery q = make_plan_query(model, make_cluster(catalog, f.gpu, f.node, num_gpus), Catalog::builtin_data_dir());
  q.cluster_shape.gpu_memory_bytes =
      static_cast<uint64_t>(static_cast<double>(q.cluster_shape.gpu_memory_bytes) * (1.0 - f.reserve_pct / 100.0));
  if (f.seq != 0) q.space.seq_len = f.seq;
  if (model.position == PositionKind::Learned && q.space.seq_len > model.max_seq_len) {
    throw InputError("--seq " + std::to_string(q.space.seq_len) + ": exceeds the model's " +
                     std::to_string(model.max_seq_len) + " learned positions");
  }
  q.space.global_batch = f.global_batch;
  q.space.framework = f.framework == "deepspeed" ? Framework::DeepSpeed
                      : f.framework == "megatron" ? Framework::Megatron
                                                  : Framework::Zeroplan;
  if (f.precision == "bf16") {
    if (!q.cluster_shape.has_bf16) {
      throw InputError("--precision bf16: " + q.cluster.gpu.name + " has no bf16 support; use --precision fp16");
    }
    q.space.precision = Precision::Bf16;
  }
  if (f.precision == "fp16") q.space.precision = Precision::Fp16;
  if (f.precision == "fp32") q.space.precision = Precision::Fp32;
  if (f.attention == "auto") {
    q.space.attentions = default_attentions(q.model, q.space.framework, q.space.precision, q.cluster_shape.has_bf16);
  }
  if (f.attention == "flash") q.space.attentions = {Attention::Flash};
  if (f.attention == "materialized") q.space.attentions = {Attention::Materialized};
  if (f.attention == "any") q.space.attentions = {Attention::Flash, Attention::Materialized};
  q.space.allow_offload = !f.no_offload;
  q.space.allow_nvme = !f.no_nvme;
  q.space.delayed_update = f.delayed_update;
  q.top_k = f.top_k;
  return q;
}

PlanQuery make_query(const PlanFlags& f, const Catalog& catalog, uint64_t num_gpus) {
  return make_query_for_model(f, catalog, catalog.resolve_model(f.model), num_gpus);
}

PlanResult plan_with_progress(PlanQuery q) {
  const bool terminal = isatty(STDERR_FILENO);
  const auto start = std::chrono::steady_clock::now();
  bool shown = false;
  uint64_t ticks = 0;
  if (terminal) {
    q.progress = [&](double) {
      ++ticks;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (s > 1.0) {
        std::fprintf(stderr, "\rsearching: %llu layouts, %.1f s", static_cast<unsigned long long>(ticks * 65536), s);
        shown = true;
      }
    };
  }
  PlanResult r = plan(q);
  if (shown) std::fprintf(stderr, "\r%60s\r", "");
  return r;
}

}  // namespace zp
