#include "cli/plan_file.h"

#include <array>

#include "costmodel/layout_check.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "models/model_json.h"

namespace zp {
namespace {

// The value of `field` among an enum's spellings (costmodel/layout.cc's to_string).
template <class E, size_t N>
E pick(const JsonFields& f, const char* field, const std::array<E, N>& values, E fallback) {
  std::vector<std::string> names;
  for (E v : values) names.emplace_back(to_string(v));
  const std::string s = f.choice(field, names, to_string(fallback));
  for (E v : values) {
    if (s == to_string(v)) return v;
  }
  return fallback;
}

uint32_t count_or(const Json& j, const JsonFields& f, const char* field, uint32_t fallback, uint32_t max) {
  if (!f.has(field)) return fallback;
  const Json& v = j.at(field);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max) {
    throw InputError(f.where(field) + ": expected an integer from 0 to " + std::to_string(max));
  }
  return static_cast<uint32_t>(v.get<uint64_t>());
}

// A positive size held to the range of its layout flag (cli/layout_flags.cc),
// so nothing wraps when narrowed to 32 bits; `fallback` 0: required.
uint32_t size_or(const JsonFields& f, const char* field, uint32_t fallback, uint32_t max) {
  return static_cast<uint32_t>(f.positive_at_most(field, max, fallback));
}

// The plan of `j`, the contents of the file `path`.
PlanFile plan_from_json(const Json& j, const std::string& path) {
  JsonFields top(j, path);
  top.reject_unknown({"schema", "version", "model", "cluster", "layout", "predicted"});
  if (top.string("schema") != "zeroplan.plan") throw InputError(path + ": field 'schema': expected \"zeroplan.plan\"");
  if (top.positive("version") != 1) throw InputError(path + ": field 'version': expected 1");
  PlanFile p;
  if (!j.contains("model")) throw InputError(path + ": field 'model': missing");
  p.model = model_from_json(j.at("model"), path + " (model)");
  if (!j.contains("layout") || !j.at("layout").is_object()) throw InputError(path + ": field 'layout': missing");
  const Json& lj = j.at("layout");
  JsonFields f(lj, path + " (layout)");
  f.reject_unknown({"dp", "tp", "pp", "ep", "vpp", "first_stage_layers", "last_stage_layers", "sequence_parallel", "micro_batch", "grad_accum", "seq_len",
                    "zero_stage", "offload_optimizer", "offload_param", "recompute", "recompute_layers",
                    "partition_activations", "checkpoints_to_cpu", "precision", "optimizer", "fp32_grad_accum",
                    "framework", "schedule", "attention", "tile_factor", "delayed_update"});
  Layout& l = p.layout;
  l.dp = size_or(f, "dp", 0, 1u << 24);
  l.tp = size_or(f, "tp", 0, 1u << 16);
  l.pp = size_or(f, "pp", 0, 1u << 16);
  l.ep = size_or(f, "ep", 1, 1u << 16);
  l.vpp = size_or(f, "vpp", 1, 1u << 10);
  l.first_stage_layers = count_or(lj, f, "first_stage_layers", 0, 1u << 20);
  l.last_stage_layers = count_or(lj, f, "last_stage_layers", 0, 1u << 20);
  l.sequence_parallel = f.boolean_or("sequence_parallel", false);
  l.micro_batch = size_or(f, "micro_batch", 0, 1u << 20);
  l.grad_accum = size_or(f, "grad_accum", 0, 1u << 20);
  l.seq_len = size_or(f, "seq_len", 0, 1u << 24);
  l.zero_stage = static_cast<uint8_t>(count_or(lj, f, "zero_stage", 0, 3));
  const std::array<Offload, 3> offloads = {Offload::None, Offload::Cpu, Offload::Nvme};
  l.offload_optimizer = pick(f, "offload_optimizer", offloads, Offload::None);
  l.offload_param = pick(f, "offload_param", offloads, Offload::None);
  l.recompute = pick(f, "recompute", std::array{Recompute::None, Recompute::Selective, Recompute::Full}, Recompute::None);
  l.recompute_layers = count_or(lj, f, "recompute_layers", 0, 1u << 20);
  l.partition_activations = f.boolean_or("partition_activations", false);
  l.checkpoints_to_cpu = f.boolean_or("checkpoints_to_cpu", false);
  l.precision = pick(f, "precision", std::array{Precision::Bf16, Precision::Fp16, Precision::Fp32}, Precision::Bf16);
  l.optimizer = pick(f, "optimizer", std::array{Optimizer::Adam, Optimizer::Sgd}, Optimizer::Adam);
  l.fp32_grad_accum = f.boolean_or("fp32_grad_accum", false);
  l.framework = pick(f, "framework", std::array{Framework::Zeroplan, Framework::DeepSpeed, Framework::Megatron},
                     Framework::Zeroplan);
  l.schedule = pick(f, "schedule", std::array{Schedule::OneFOneB, Schedule::GPipe, Schedule::Interleaved},
                    Schedule::OneFOneB);
  l.attention = pick(f, "attention", std::array{Attention::Flash, Attention::Materialized}, Attention::Flash);
  l.tile_factor = size_or(f, "tile_factor", 1, 1u << 16);
  l.delayed_update = f.boolean_or("delayed_update", false);
  if (l.seq_len > p.model.max_seq_len) throw InputError(path + " (layout): field 'seq_len': exceeds the model's positions");
  return p;
}

}  // namespace

PlanFile read_plan_file(const std::string& path) { return plan_from_json(parse_json_file(path), path); }

Job read_plan_job(const std::string& path, const Catalog& catalog) {
  const Json file = parse_json_file(path);
  const PlanFile plan = plan_from_json(file, path);
  const Json cluster = file.value("cluster", Json::object());
  auto text = [&](const char* key) {
    if (!cluster.contains(key) || !cluster.at(key).is_string()) {
      throw InputError(path + ": field 'cluster." + std::string(key) + "': expected a string");
    }
    return cluster.at(key).get<std::string>();
  };
  if (!cluster.contains("num_gpus") || !cluster.at("num_gpus").is_number_unsigned()) {
    throw InputError(path + ": field 'cluster.num_gpus': expected a positive integer");
  }
  Job job;
  job.model = plan.model;
  job.shape = make_shape(job.model);
  job.cluster = make_cluster(catalog, text("gpu"), text("node"), cluster.at("num_gpus").get<uint64_t>());
  job.cluster_shape = make_cluster_shape(job.cluster);
  job.layout = plan.layout;
  const std::string why = check_layout(job.shape, job.layout, job.cluster_shape, job.cluster.num_gpus);
  if (!why.empty()) throw InputError(path + ": layout: " + why);
  job.options = resolve_options({}, job.layout);
  job.network = make_network(job.cluster, Catalog::builtin_data_dir());
  return job;
}

std::vector<EmittedFile> emit_job(const std::string& format, const Job& job, MemoryResult* memory) {
  const MemoryResult m = evaluate_memory({job.shape, job.layout, job.cluster_shape, job.options});
  const StepTime time = evaluate_time({job.shape, job.layout, job.cluster.gpu, job.cluster.node, job.network});
  if (memory) *memory = m;
  return emit_config(format, {job.model, job.cluster, job.layout, m, time});
}

}  // namespace zp
