#include "planner/emit.h"

#include <sstream>

#include "costmodel/rank_params.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "models/model_json.h"

namespace zp {
namespace {

Json offload_json(Offload o, bool params) {
  Json j = {{"device", o == Offload::Cpu ? "cpu" : "nvme"}, {"pin_memory", true}};
  if (o == Offload::Nvme) {
    j["nvme_path"] = "/local_nvme";
    j["buffer_count"] = params ? 5 : 4;
    if (params) {
      j["buffer_size"] = 100000000;
      j["max_in_cpu"] = 1000000000;
    }
  }
  return j;
}

std::string deepspeed_config(const EmitInput& in) {
  const Layout& l = in.layout;
  Json zero = {{"stage", l.zero_stage},
               {"overlap_comm", l.zero_stage == 3},
               {"contiguous_gradients", true},
               {"reduce_bucket_size", 500000000}};
  if (l.zero_stage == 1 || l.zero_stage == 2) {
    zero["allgather_partitions"] = true;
    zero["allgather_bucket_size"] = 500000000;
    zero["reduce_scatter"] = true;
  }
  if (l.zero_stage == 3) {
    zero["stage3_prefetch_bucket_size"] = 50000000;
    zero["stage3_max_live_parameters"] = 1000000000;
    zero["stage3_max_reuse_distance"] = 1000000000;
    zero["stage3_param_persistence_threshold"] = 100000;
    zero["sub_group_size"] = 1000000000;
    zero["stage3_gather_16bit_weights_on_model_save"] = true;
  }
  if (l.offload_optimizer != Offload::None) zero["offload_optimizer"] = offload_json(l.offload_optimizer, false);
  if (l.offload_param != Offload::None) zero["offload_param"] = offload_json(l.offload_param, true);
  Json ds = {{"train_batch_size", l.global_batch()},
             {"train_micro_batch_size_per_gpu", l.micro_batch},
             {"gradient_accumulation_steps", l.grad_accum},
             {"gradient_clipping", 1.0},
             {"zero_optimization", zero},
             {"steps_per_print", 10},
             {"wall_clock_breakdown", false}};
  if (l.precision == Precision::Bf16) ds["bf16"] = {{"enabled", true}};
  if (l.precision == Precision::Fp16) {
    ds["fp16"] = {{"enabled", true}, {"loss_scale", 0}, {"initial_scale_power", 16}, {"loss_scale_window", 1000},
                  {"hysteresis", 2}, {"min_loss_scale", 1}};
  }
  if (l.recompute != Recompute::None) {
    ds["activation_checkpointing"] = {{"partition_activations", l.partition_activations},
                                      {"cpu_checkpointing", l.checkpoints_to_cpu},
                                      {"contiguous_memory_optimization", false},
                                      {"synchronize_checkpoint_boundary", false}};
  }
  if (l.offload_optimizer == Offload::Nvme || l.offload_param == Offload::Nvme) {
    ds["aio"] = {{"block_size", 1048576}, {"queue_depth", 8}, {"thread_count", 1}, {"single_submit", false},
                 {"overlap_events", true}};
  }
  return ds.dump(2) + "\n";
}

std::string hostfile(const Cluster& c) {
  std::ostringstream out;
  for (uint64_t n = 0; n < c.num_nodes(); ++n) out << "node" << n << " slots=" << c.gpus_in_node() << "\n";
  return out.str();
}

std::string deepspeed_command(const EmitInput& in) {
  const Layout& l = in.layout;
  std::ostringstream out;
  out << "#!/usr/bin/env bash\n"
      << "# zeroplan: " << in.model.name << " on " << in.cluster.num_gpus << " x " << in.cluster.gpu.name << ", "
      << describe(l) << "\n";
  if (l.tp > 1 || l.pp > 1) {
    out << "# DeepSpeed's engine provides data parallelism and ZeRO; tensor parallelism ("
        << l.tp << ") and pipeline stages (" << l.pp << ") come from the model code (Megatron-DeepSpeed,\n"
        << "# or deepspeed.pipe.PipelineModule(num_stages=" << l.pp << ")).\n";
    if (uneven_split(l)) {
      out << "# Uneven split: " << l.first_stage_layers << " layers on the first stage, " << l.last_stage_layers
          << " on the last (0 = even share); give PipelineModule a matching partition_method.\n";
    }
  }
  out << "deepspeed --hostfile hostfile --num_nodes " << in.cluster.num_nodes() << " --num_gpus "
      << in.cluster.gpus_in_node() << " train.py --deepspeed --deepspeed_config ds_config.json\n";
  return out.str();
}

std::string torchrun_prefix(const Cluster& c) {
  std::ostringstream out;
  out << "torchrun --nnodes " << c.num_nodes() << " --nproc_per_node " << c.gpus_in_node();
  if (c.num_nodes() > 1) {
    out << " --node_rank \"$NODE_RANK\" --rdzv_backend c10d --rdzv_endpoint \"$MASTER_ADDR:29500\"";
  }
  return out.str();
}

std::string megatron_command(const EmitInput& in) {
  const Layout& l = in.layout;
  const ModelSpec& m = in.model;
  std::ostringstream a;
  a << "#!/usr/bin/env bash\n# zeroplan: " << m.name << " on " << in.cluster.num_gpus << " x " << in.cluster.gpu.name
    << ", " << describe(l) << "\n";
  if (m.num_layers % l.pp != 0 && !uneven_split(l)) {
    a << "# " << m.num_layers << " layers do not split evenly over " << l.pp
      << " stages: set --decoder-first-pipeline-num-layers / --decoder-last-pipeline-num-layers as needed.\n";
  }
  a << torchrun_prefix(in.cluster) << " pretrain_gpt.py \\\n";
  auto arg = [&a](const std::string& s) { a << "  " << s << " \\\n"; };
  arg("--tensor-model-parallel-size " + std::to_string(l.tp));
  arg("--pipeline-model-parallel-size " + std::to_string(l.pp));
  if (l.vpp > 1) arg("--num-layers-per-virtual-pipeline-stage " + std::to_string(m.num_layers / (l.pp * l.vpp)));
  if (l.first_stage_layers) arg("--decoder-first-pipeline-num-layers " + std::to_string(l.first_stage_layers));
  if (l.last_stage_layers) arg("--decoder-last-pipeline-num-layers " + std::to_string(l.last_stage_layers));
  if (l.sequence_parallel && l.tp > 1) arg("--sequence-parallel");
  if (l.ep > 1) arg("--expert-model-parallel-size " + std::to_string(l.ep));
  if (l.recompute == Recompute::Selective) arg("--recompute-granularity selective");
  if (l.recompute == Recompute::Full) {
    arg("--recompute-granularity full");
    arg("--recompute-method uniform");
    arg("--recompute-num-layers " + std::to_string(l.recompute_layers == 0 ? 1 : l.recompute_layers));
  }
  if (l.zero_stage >= 1) arg("--use-distributed-optimizer");
  arg("--micro-batch-size " + std::to_string(l.micro_batch));
  arg("--global-batch-size " + std::to_string(l.global_batch()));
  arg("--seq-length " + std::to_string(l.seq_len));
  arg("--max-position-embeddings " + std::to_string(std::max<uint64_t>(m.max_seq_len, l.seq_len)));
  arg("--num-layers " + std::to_string(m.num_layers));
  arg("--hidden-size " + std::to_string(m.hidden_size));
  arg("--ffn-hidden-size " + std::to_string(m.ffn_hidden_size));
  arg("--num-attention-heads " + std::to_string(m.num_heads));
  if (m.head_dim * m.num_heads != m.hidden_size) arg("--kv-channels " + std::to_string(m.head_dim));
  if (m.num_kv_heads != m.num_heads) {
    arg("--group-query-attention");
    arg("--num-query-groups " + std::to_string(m.num_kv_heads));
  }
  if (m.mlp == MlpKind::SwiGlu) arg("--swiglu");
  if (m.norm == NormKind::RMSNorm) arg("--normalization RMSNorm");
  if (m.position == PositionKind::Rotary) arg("--position-embedding-type rope");
  if (!m.tied_embeddings) arg("--untie-embeddings-and-output-weights");
  if (!m.qkv_bias && !m.mlp_bias) arg("--disable-bias-linear");
  if (!m.dropout) {
    arg("--attention-dropout 0.0");
    arg("--hidden-dropout 0.0");
  }
  if (m.num_experts > 0) {
    arg("--num-experts " + std::to_string(m.num_experts));
    arg("--moe-router-topk " + std::to_string(m.moe_top_k));
  }
  if (l.attention == Attention::Flash) arg("--use-flash-attn");
  if (l.dp_overlap == Toggle::On) arg("--overlap-grad-reduce");
  if (l.precision == Precision::Bf16) arg("--bf16");
  if (l.precision == Precision::Fp16) arg("--fp16");  // fp32: Megatron's default, no flag
  a << "  \"$@\"\n";
  return a.str();
}

std::string torchrun_command(const EmitInput& in) {
  const Layout& l = in.layout;
  std::ostringstream out;
  out << "#!/usr/bin/env bash\n# zeroplan: " << in.model.name << " on " << in.cluster.num_gpus << " x "
      << in.cluster.gpu.name << ", " << describe(l) << "\n"
      << "# The layout your script must build: tp=" << l.tp << " pp=" << l.pp << " dp=" << l.dp
      << " micro-batch=" << l.micro_batch << " accumulation=" << l.grad_accum << " (global batch "
      << l.global_batch() << ")\n"
      << torchrun_prefix(in.cluster) << " train.py \"$@\"\n";
  return out.str();
}

std::string plan_file(const EmitInput& in) {
  const Layout& l = in.layout;
  Json layout = {{"dp", l.dp}, {"tp", l.tp}, {"pp", l.pp}, {"vpp", l.vpp}, {"ep", l.ep},
                 {"sequence_parallel", l.sequence_parallel}, {"micro_batch", l.micro_batch},
                 {"first_stage_layers", l.first_stage_layers}, {"last_stage_layers", l.last_stage_layers},
                 {"grad_accum", l.grad_accum}, {"seq_len", l.seq_len}, {"zero_stage", l.zero_stage},
                 {"offload_optimizer", to_string(l.offload_optimizer)}, {"offload_param", to_string(l.offload_param)},
                 {"recompute", to_string(l.recompute)}, {"recompute_layers", l.recompute_layers},
                 {"partition_activations", l.partition_activations}, {"checkpoints_to_cpu", l.checkpoints_to_cpu},
                 {"precision", to_string(l.precision)}, {"optimizer", to_string(l.optimizer)},
                 {"fp32_grad_accum", l.fp32_grad_accum}, {"framework", to_string(l.framework)},
                 {"schedule", to_string(l.schedule)}, {"attention", to_string(l.attention)},
                 {"tile_factor", l.tile_factor}, {"delayed_update", l.delayed_update}};
  Json memory = Json::object();
  for (int c = 0; c < kNumComponents; ++c) {
    if (in.memory.rank.bytes[0][c] > 0) memory[to_string(static_cast<Component>(c))] = in.memory.rank.bytes[0][c];
  }
  Json plan = {{"schema", "zeroplan.plan"},
               {"version", 1},
               {"model", model_to_json(in.model)},
               {"cluster", {{"gpu", in.cluster.gpu.name}, {"node", in.cluster.node.name}, {"num_gpus", in.cluster.num_gpus}}},
               {"layout", layout},
               {"predicted", {{"gpu_bytes", in.memory.gpu_bytes},
                              {"most_loaded_stage", in.memory.stage},
                              {"gpu_components_bytes", memory},
                              {"host_bytes_per_node", in.memory.host_bytes_per_node},
                              {"step_s", in.time.total_s},
                              {"tokens_per_s", in.time.tokens_per_s},
                              {"mfu", in.time.mfu}}}};
  return plan.dump(2) + "\n";
}

}  // namespace

std::vector<EmittedFile> emit_config(const std::string& format, const EmitInput& in) {
  if (format == "deepspeed") {
    return {{"ds_config.json", deepspeed_config(in)}, {"hostfile", hostfile(in.cluster)}, {"launch.sh", deepspeed_command(in)}};
  }
  if (format == "megatron") return {{"launch.sh", megatron_command(in)}};
  if (format == "torchrun") return {{"launch.sh", torchrun_command(in)}};
  if (format == "zeroplan") return {{"plan.json", plan_file(in)}};
  throw InputError("--format: expected deepspeed, megatron, torchrun or zeroplan, got \"" + format + "\"");
}

const std::vector<std::string>& megatron_known_args() {
  // megatron/training/arguments.py (NVIDIA/Megatron-LM): the flags zeroplan writes.
  static const std::vector<std::string> args = {
      "--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--num-layers-per-virtual-pipeline-stage",
      "--decoder-first-pipeline-num-layers", "--decoder-last-pipeline-num-layers",
      "--sequence-parallel", "--expert-model-parallel-size", "--recompute-granularity", "--recompute-method",
      "--recompute-num-layers", "--use-distributed-optimizer", "--micro-batch-size", "--global-batch-size",
      "--seq-length", "--max-position-embeddings", "--num-layers", "--hidden-size", "--ffn-hidden-size",
      "--num-attention-heads", "--kv-channels", "--group-query-attention", "--num-query-groups", "--swiglu",
      "--normalization", "--position-embedding-type", "--untie-embeddings-and-output-weights", "--disable-bias-linear",
      "--attention-dropout", "--hidden-dropout", "--num-experts", "--moe-router-topk", "--use-flash-attn",
      "--overlap-grad-reduce", "--bf16", "--fp16"};
  return args;
}

const std::vector<std::string>& deepspeed_known_keys() {
  // deepspeed.ai/docs/config-json (Batch size, FP16/BF16, ZeRO, activation
  // checkpointing, AIO sections) and deepspeed/runtime/zero/config.py,
  // offload_config.py, deepspeed/runtime/activation_checkpointing/config.py.
  static const std::vector<std::string> keys = {
      "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping",
      "steps_per_print", "wall_clock_breakdown", "bf16", "fp16", "enabled", "loss_scale", "initial_scale_power",
      "loss_scale_window", "hysteresis", "min_loss_scale", "zero_optimization", "stage", "overlap_comm",
      "contiguous_gradients", "reduce_bucket_size", "allgather_partitions", "allgather_bucket_size",
      "reduce_scatter", "stage3_prefetch_bucket_size", "stage3_max_live_parameters", "stage3_max_reuse_distance",
      "stage3_param_persistence_threshold", "sub_group_size", "stage3_gather_16bit_weights_on_model_save",
      "offload_optimizer", "offload_param", "device", "pin_memory", "nvme_path", "buffer_count", "buffer_size",
      "max_in_cpu", "activation_checkpointing", "partition_activations", "cpu_checkpointing",
      "contiguous_memory_optimization", "synchronize_checkpoint_boundary", "aio", "block_size", "queue_depth",
      "thread_count", "single_submit", "overlap_events"};
  return keys;
}

}  // namespace zp
