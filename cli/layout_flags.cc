#include "cli/layout_flags.h"

#include <initializer_list>
#include <string>
#include <utility>

#include "cli/plan_flags.h"
#include "costmodel/layout_check.h"
#include "models/input_error.h"

namespace zp {
namespace {

// The value named v of `flag`. CLI11 checks the flags' own values; this
// also holds for fields set by other means (a validate matrix's case), so
// an unknown name is the flag's one-line error, never a silent default.
template <class E>
E pick(const std::string& v, const char* flag, std::initializer_list<std::pair<const char*, E>> table) {
  std::string names;
  for (const auto& [name, value] : table) {
    if (v == name) return value;
    names += (names.empty() ? "" : ", ") + std::string(name);
  }
  throw InputError(std::string(flag) + ": expected one of " + names + ", got \"" + v + "\"");
}

}  // namespace

void add_layout_flags(CLI::App* cmd, LayoutFlags& f, bool model_required) {
  cmd->add_option("--model", f.model, "Catalog name, zeroplan model JSON or Hugging Face config.json")->required(model_required);
  cmd->add_option("--gpu", f.gpu, "GPU name from `zeroplan gpus`")->required(model_required);
  cmd->add_option("--gpus", f.gpus, "Number of GPUs in the job")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 24));
  cmd->add_option("--node", f.node, "Node preset (default: the GPU's own)");
  cmd->add_option("--dp", f.dp, "Data-parallel size (default: gpus / (tp x pp))")->check(CLI::Range(1u, 1u << 24));
  cmd->add_option("--tp", f.tp, "Tensor-parallel size")->check(CLI::Range(1u, 1u << 16));
  cmd->add_option("--pp", f.pp, "Pipeline-parallel size")->check(CLI::Range(1u, 1u << 16));
  cmd->add_option("--vpp", f.vpp, "Virtual pipeline stages per rank (interleaved 1F1B)")->check(CLI::Range(1u, 1u << 10));
  cmd->add_option("--first-stage-layers", f.first_stage_layers,
                  "Layers on the first pipeline stage, the stages between sharing the rest evenly (0: even split)")
      ->check(CLI::Range(0u, 1u << 20));
  cmd->add_option("--last-stage-layers", f.last_stage_layers, "Layers on the last pipeline stage (0: even split)")
      ->check(CLI::Range(0u, 1u << 20));
  cmd->add_option("--ep", f.ep, "Expert-parallel size (MoE; divides dp)")->check(CLI::Range(1u, 1u << 16));
  cmd->add_flag("--sp", f.sp, "Sequence parallelism (with tp > 1)");
  cmd->add_option("--micro-batch", f.micro_batch, "Micro-batch size per GPU")->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--grad-accum", f.grad_accum, "Gradient-accumulation steps (= micro-batches per pipeline)")
      ->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--global-batch", f.global_batch, "Global batch in sequences (sets --grad-accum)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  cmd->add_option("--seq", f.seq, "Sequence length (default: 2048, or the model's maximum if smaller)")
      ->check(CLI::Range(1u, 1u << 24));
  cmd->add_option("--zero", f.zero, "ZeRO stage 0-3")->check(CLI::Range(0, 3));
  cmd->add_option("--offload-optimizer", f.offload_optimizer, "none|cpu|nvme")->check(CLI::IsMember({"none", "cpu", "nvme"}));
  cmd->add_option("--offload-param", f.offload_param, "none|cpu|nvme (ZeRO-3)")->check(CLI::IsMember({"none", "cpu", "nvme"}));
  cmd->add_option("--recompute", f.recompute, "none|selective|full")->check(CLI::IsMember({"none", "selective", "full"}));
  cmd->add_option("--recompute-layers", f.recompute_layers, "With full recompute: layers per stage (0 = all)");
  cmd->add_flag("--partition-activations", f.partition_activations, "ZeRO-R: split checkpoints across the tp group");
  cmd->add_flag("--checkpoints-to-cpu", f.checkpoints_to_cpu, "ZeRO-R: keep checkpoints in host memory");
  cmd->add_option("--precision", f.precision, "bf16|fp16|fp32 (default bf16, or fp16 on a GPU without bf16)")->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_option("--optimizer", f.optimizer, "adam|sgd")->check(CLI::IsMember({"adam", "sgd"}));
  cmd->add_flag("--fp32-grad-accum", f.fp32_grad_accum, "Accumulate gradients in fp32 (zeroplan accounting)");
  cmd->add_option("--framework", f.framework, "Whose accounting: zeroplan|deepspeed|megatron")
      ->check(CLI::IsMember({"zeroplan", "deepspeed", "megatron"}));
  cmd->add_option("--schedule", f.schedule, "1f1b|gpipe|interleaved (default: interleaved when vpp > 1)")
      ->check(CLI::IsMember({"1f1b", "gpipe", "interleaved"}));
  cmd->add_option("--attention", f.attention, "flash|materialized (default flash; with --rank, fit's choice)")->check(CLI::IsMember({"flash", "materialized"}));
  cmd->add_option("--dropout", f.dropout, "model|on|off (default: as the model was trained)")
      ->check(CLI::IsMember({"model", "on", "off"}));
  cmd->add_option("--tile-factor", f.tile_factor, "ZeRO-Infinity tiling of large operators")->check(CLI::Range(1u, 1u << 16));
  cmd->add_flag("--emulated", f.emulated, "One process stands in for a rank (no NCCL memory)");
  cmd->add_option("--fragmentation-pct", f.fragmentation_pct, "Allocator fragmentation reserve, % of tensor bytes")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--reduce-bucket", f.reduce_bucket, "Gradient bucket in elements (default: the framework's)");
  cmd->add_option("--overlap-comm", f.overlap_comm, "default|on|off: double-buffered buckets")
      ->check(CLI::IsMember({"default", "on", "off"}));
  cmd->add_option("--dp-overlap", f.dp_overlap, "default|on|off: data-parallel sync overlapped with backward")
      ->check(CLI::IsMember({"default", "on", "off"}));
  cmd->add_flag("--tp-overlap", f.tp_overlap, "Tensor-parallel collectives hidden behind GEMMs");
  cmd->add_flag("--delayed-update", f.delayed_update, "ZeRO-Offload one-step delayed parameter update");
  cmd->add_option("--rank", f.rank, "Use the layout the fit search ranks N (same model, GPUs, --seq, --global-batch)")
      ->check(CLI::Range(size_t{1}, size_t{100}));
}

Job make_job(const LayoutFlags& f, const Catalog& catalog) {
  Job j;
  j.model = catalog.resolve_model(f.model);
  j.shape = make_shape(j.model);
  j.cluster = make_cluster(catalog, f.gpu, f.node, f.gpus);
  j.cluster_shape = make_cluster_shape(j.cluster);

  Layout& l = j.layout;
  l.tp = f.tp;
  l.pp = f.pp;
  if (f.dp != 0) {
    l.dp = f.dp;
  } else {
    const uint64_t mp = uint64_t{f.tp} * f.pp;
    if (f.gpus % mp != 0) {
      throw InputError("--tp " + std::to_string(f.tp) + " x --pp " + std::to_string(f.pp) + " does not divide --gpus " +
                       std::to_string(f.gpus));
    }
    l.dp = static_cast<uint32_t>(f.gpus / mp);
  }
  l.vpp = f.vpp;
  l.first_stage_layers = f.first_stage_layers;
  l.last_stage_layers = f.last_stage_layers;
  l.ep = f.ep;
  l.sequence_parallel = f.sp;
  l.micro_batch = f.micro_batch;
  if (f.global_batch != 0) {
    const uint64_t per_step = uint64_t{l.dp} * l.micro_batch;
    if (f.global_batch % per_step != 0) {
      throw InputError("--global-batch " + std::to_string(f.global_batch) + ": expected a multiple of dp x micro-batch = " +
                       std::to_string(per_step));
    }
    if (f.grad_accum != 0 && f.grad_accum != f.global_batch / per_step) {
      throw InputError("--grad-accum " + std::to_string(f.grad_accum) + " contradicts --global-batch " +
                       std::to_string(f.global_batch));
    }
    l.grad_accum = static_cast<uint32_t>(f.global_batch / per_step);
  } else {
    l.grad_accum = f.grad_accum == 0 ? 1 : f.grad_accum;
  }
  l.seq_len = f.seq != 0 ? f.seq : static_cast<uint32_t>(std::min<uint64_t>(2048, j.model.max_seq_len));
  l.zero_stage = static_cast<uint8_t>(f.zero);
  const std::initializer_list<std::pair<const char*, Offload>> offloads = {
      {"none", Offload::None}, {"cpu", Offload::Cpu}, {"nvme", Offload::Nvme}};
  l.offload_optimizer = pick(f.offload_optimizer, "--offload-optimizer", offloads);
  l.offload_param = pick(f.offload_param, "--offload-param", offloads);
  l.recompute = pick<Recompute>(f.recompute, "--recompute", {{"none", Recompute::None}, {"selective", Recompute::Selective}, {"full", Recompute::Full}});
  l.recompute_layers = f.recompute_layers;
  l.partition_activations = f.partition_activations;
  l.checkpoints_to_cpu = f.checkpoints_to_cpu;
  // Unless given, the GPU's best, as fit's search takes (planner/planner.cc).
  const std::string precision = !f.precision.empty() ? f.precision : j.cluster_shape.has_bf16 ? "bf16" : "fp16";
  l.precision = pick<Precision>(precision, "--precision", {{"bf16", Precision::Bf16}, {"fp16", Precision::Fp16}, {"fp32", Precision::Fp32}});
  l.optimizer = pick<Optimizer>(f.optimizer, "--optimizer", {{"adam", Optimizer::Adam}, {"sgd", Optimizer::Sgd}});
  l.fp32_grad_accum = f.fp32_grad_accum;
  l.framework = pick<Framework>(f.framework, "--framework", {{"zeroplan", Framework::Zeroplan}, {"deepspeed", Framework::DeepSpeed},
                                   {"megatron", Framework::Megatron}});
  const std::string schedule = f.schedule.empty() ? (f.vpp > 1 ? "interleaved" : "1f1b") : f.schedule;
  l.schedule = pick<Schedule>(schedule, "--schedule", {{"1f1b", Schedule::OneFOneB}, {"gpipe", Schedule::GPipe},
                               {"interleaved", Schedule::Interleaved}});
  l.attention = pick<Attention>(f.attention.empty() ? "flash" : f.attention, "--attention", {{"flash", Attention::Flash}, {"materialized", Attention::Materialized}});
  l.dropout = pick<Dropout>(f.dropout, "--dropout", {{"model", Dropout::ModelDefault}, {"on", Dropout::On}, {"off", Dropout::Off}});
  l.tile_factor = f.tile_factor;
  l.emulated = f.emulated;
  l.dp_overlap = pick<Toggle>(f.dp_overlap, "--dp-overlap", {{"default", Toggle::Default}, {"on", Toggle::On}, {"off", Toggle::Off}});
  l.tp_comm_overlap = f.tp_overlap;
  l.delayed_update = f.delayed_update;

  if (f.rank > 0) {
    PlanFlags p;
    p.model = f.model;
    p.gpu = f.gpu;
    p.node = f.node;
    p.gpus = f.gpus;
    p.seq = f.seq;
    p.global_batch = f.global_batch;
    p.framework = f.framework;
    p.precision = f.precision;
    if (!f.attention.empty()) p.attention = f.attention;
    p.top_k = f.rank;
    const PlanResult r = plan(make_query_for_model(p, catalog, j.model, f.gpus));
    if (r.top.size() < f.rank) {
      throw InputError("--rank " + std::to_string(f.rank) + ": the fit search found " + std::to_string(r.top.size()) +
                       " layouts that fit");
    }
    l = r.top[f.rank - 1].layout;
  }
  const std::string why = check_layout(j.shape, l, j.cluster_shape, j.cluster.num_gpus);
  if (!why.empty()) throw InputError("layout: " + why);

  MemoryOptions o;
  o.overheads.fragmentation_fraction = f.fragmentation_pct / 100.0;
  o.reduce_bucket_elems = f.reduce_bucket;
  if (f.overlap_comm != "default") {
    o.overlap_comm_set = true;
    o.overlap_comm = f.overlap_comm == "on";
  }
  j.options = resolve_options(o, l);
  j.network = make_network(j.cluster, Catalog::builtin_data_dir());
  return j;
}

}  // namespace zp
