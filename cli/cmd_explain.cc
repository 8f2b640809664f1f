// `zeroplan explain`: the per-GPU memory of one layout, component by
// component, at the most loaded rank; host memory and NVMe per node; whether
// it fits, and if not by how much and what dominates. --json gives the same
// as a versioned object (docs/cli.md documents it).
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/layout_flags.h"
#include "costmodel/compute.h"
#include "costmodel/memory_model.h"
#include "costmodel/time_model.h"
#include "models/json_file.h"

namespace zp {
namespace {

Json layout_json(const Layout& l) {
  return {{"dp", l.dp}, {"tp", l.tp}, {"pp", l.pp}, {"vpp", l.vpp}, {"ep", l.ep},
          {"sequence_parallel", l.sequence_parallel}, {"micro_batch", l.micro_batch},
          {"grad_accum", l.grad_accum}, {"global_batch", l.global_batch()}, {"seq_len", l.seq_len},
          {"zero_stage", l.zero_stage}, {"offload_optimizer", to_string(l.offload_optimizer)},
          {"offload_param", to_string(l.offload_param)}, {"recompute", to_string(l.recompute)},
          {"recompute_layers", l.recompute_layers}, {"partition_activations", l.partition_activations},
          {"checkpoints_to_cpu", l.checkpoints_to_cpu}, {"precision", to_string(l.precision)},
          {"optimizer", to_string(l.optimizer)}, {"fp32_grad_accum", l.fp32_grad_accum},
          {"framework", to_string(l.framework)}, {"schedule", to_string(l.schedule)},
          {"attention", to_string(l.attention)}, {"tile_factor", l.tile_factor}, {"emulated", l.emulated}};
}

Json residence_json(const MemoryTotals& t, Residence r) {
  Json c = Json::object();
  for (int i = 0; i < kNumComponents; ++i) {
    const uint64_t b = t.bytes[static_cast<int>(r)][i];
    if (b > 0) c[to_string(static_cast<Component>(i))] = b;
  }
  return c;
}

Component dominant(const MemoryTotals& t) {
  int best = 0;
  for (int i = 1; i < kNumComponents; ++i) {
    if (t.bytes[0][i] > t.bytes[0][best]) best = i;
  }
  return static_cast<Component>(best);
}

Json rows_json(const RowsSink& rows) {
  Json out = Json::array();
  for (int i = 0; i < rows.size(); ++i) {
    const MemoryRow& r = rows[i];
    out.push_back({{"component", to_string(r.component)}, {"residence", to_string(r.residence)},
                   {"tensor", r.tensor}, {"dtype", to_string(r.dtype)},
                   {"shape", {r.shape[0], r.shape[1], r.shape[2], r.shape[3]}}, {"copies", r.copies},
                   {"bytes", r.bytes}});
  }
  return out;
}

std::string seconds(double s) {
  if (s >= 3600 * 24) return fixed(s / 86400, 1) + " days";
  if (s >= 3600) return fixed(s / 3600, 1) + " h";
  if (s >= 1) return fixed(s, 3) + " s";
  return fixed(s * 1e3, 2) + " ms";
}

std::string gb(double bytes) { return fixed(bytes / 1e9, 3) + " GB"; }

void print_time(const Job& j, const MemoryResult& memory, const StepTime& t, double tokens) {
  std::cout << "\nStep time (" << j.cluster.gpu.name << " peaks x " << (j.network.eff.gpu.empty() ? "generic" : j.network.eff.gpu)
            << " efficiency curves)\n";
  TextTable tt({"phase", "time", "share"});
  auto row = [&](const char* name, double s) {
    if (s > 0) tt.add({name, seconds(s), percent(s / t.total_s)});
  };
  row("compute (fwd + bwd)", t.compute_s - t.recompute_s);
  row("recompute", t.recompute_s);
  row("tensor-parallel comm (exposed)", t.tp_comm_s);
  row("expert all-to-all", t.ep_comm_s);
  row("pipeline send/recv", t.pp_comm_s);
  row("pipeline bubble: warm-up", t.warmup_s);
  row("pipeline bubble: cool-down", t.cooldown_s);
  row("data-parallel / ZeRO comm (exposed)", t.dp_comm_s);
  row("optimizer step", t.optimizer_s);
  row("offload traffic (exposed)", t.offload_s);
  row("gradient zeroing (zeroplan executor)", t.gradient_zeroing_s);
  tt.rule();
  tt.add({"step", seconds(t.total_s), "100.0%"});
  tt.print(std::cout);
  std::cout << "tokens/s " << fixed(t.tokens_per_s, 0) << ", samples/s " << fixed(t.samples_per_s, 2) << ", "
            << fixed(t.tflops_per_gpu, 1) << " model TFLOP/s per GPU, MFU " << percent(t.mfu) << ", HFU " << percent(t.hfu)
            << " (model FLOPs: matrix products incl. full attention scores, no recompute; HFU adds recompute)\n";
  const AttentionKernel kernel = attention_kernel(j.shape, j.layout);
  std::cout << "attention core priced as: " << to_string(kernel) << ", backward " << fixed(attention_backward_ratio(kernel), 1)
            << " x its forward (the kernel's products, docs/time-model.md)\n";
  if (kernel == AttentionKernel::FlashWarp) {
    // The CUDA-core kernels are the slow path (fit's --attention auto searches the other one here too).
    Layout other = j.layout;
    other.attention = Attention::Materialized;
    const StepTime mt = evaluate_time({j.shape, other, j.cluster.gpu, j.cluster.node, j.network});
    const MemoryResult mm = evaluate_memory({j.shape, other, j.cluster_shape, j.options});
    std::cout << "  with --attention materialized (cuBLAS products): step " << seconds(mt.total_s) << ", "
              << gib(mm.gpu_bytes > memory.gpu_bytes ? mm.gpu_bytes - memory.gpu_bytes : 0, 2) << " more GPU memory"
              << (mm.fits() ? "" : " (does not fit)") << "\n";
  }
  if (tokens > 0) std::cout << "time to train " << fixed(tokens / 1e9, 1) << "B tokens: " << seconds(tokens / t.tokens_per_s) << "\n";
  if (t.comm_rows > 0) {
    std::cout << "\nCommunication per GPU per step (ring algorithms; GB = 1e9 bytes)\n";
    TextTable ct({"dim", "collective", "buffer", "calls", "sent per GPU", "time"});
    for (int i = 0; i < t.comm_rows; ++i) {
      const CommRow& c = t.comm[i];
      ct.add({c.dimension, c.collective, gb(c.buffer_bytes), fixed(c.calls, 0), gb(c.sent_bytes), seconds(c.seconds)});
    }
    ct.print(std::cout);
  }
}

Json time_json(const Job& job, const StepTime& t, double tokens) {
  const AttentionKernel kernel = attention_kernel(job.shape, job.layout);
  Json comm = Json::array();
  for (int i = 0; i < t.comm_rows; ++i) {
    const CommRow& c = t.comm[i];
    comm.push_back({{"dimension", c.dimension}, {"collective", c.collective}, {"buffer_bytes", c.buffer_bytes},
                    {"calls", c.calls}, {"sent_bytes_per_gpu", c.sent_bytes}, {"seconds", c.seconds}});
  }
  Json j = {{"step_s", t.total_s},
            {"phases_s", {{"compute", t.compute_s - t.recompute_s}, {"recompute", t.recompute_s},
                          {"tp_comm", t.tp_comm_s}, {"ep_comm", t.ep_comm_s}, {"pp_comm", t.pp_comm_s},
                          {"bubble", t.bubble_s}, {"bubble_warmup", t.warmup_s}, {"bubble_cooldown", t.cooldown_s},
                          {"dp_comm", t.dp_comm_s}, {"optimizer", t.optimizer_s},
                          {"offload", t.offload_s}, {"gradient_zeroing", t.gradient_zeroing_s}}},
            {"attention_kernel", to_string(kernel)},
            {"attention_backward_ratio", attention_backward_ratio(kernel)},
            {"bubble_fraction", t.bubble_fraction},
            {"tokens_per_s", t.tokens_per_s},
            {"samples_per_s", t.samples_per_s},
            {"model_tflops_per_gpu", t.tflops_per_gpu},
            {"mfu", t.mfu},
            {"hfu", t.hfu},
            {"flop_convention", "model FLOPs: 2 per multiply-add of every matrix product incl. full attention scores and logits, forward + 2x backward, no recompute; HFU adds recompute"},
            {"communication", comm}};
  if (tokens > 0) j["time_to_train_s"] = tokens / t.tokens_per_s;
  return j;
}

void print_text(const Job& j, const MemoryResult& res, const RowsSink& rows, bool show_rows) {
  const Layout& l = j.layout;
  std::cout << "zeroplan explain: " << j.model.name << " on " << j.cluster.num_gpus << " x " << j.cluster.gpu.name
            << " (" << j.cluster.num_nodes() << " x " << j.cluster.node.name << ")\n";
  std::cout << "layout: " << describe(l) << "\n";
  std::cout << "accounting: " << to_string(l.framework) << "; most loaded rank: pipeline stage " << res.stage << " of "
            << l.pp << (l.emulated ? " (emulated rank)" : "") << "\n\n";
  TextTable t({"per-GPU memory", "GiB", "bytes", "share"});
  for (int i = 0; i < kNumComponents; ++i) {
    const uint64_t b = res.rank.bytes[0][i];
    if (b == 0) continue;
    t.add({to_string(static_cast<Component>(i)), fixed(static_cast<double>(b) / 1073741824.0, 3), with_commas(b),
           percent(static_cast<double>(b) / static_cast<double>(res.gpu_bytes))});
  }
  t.rule();
  t.add({"total", fixed(static_cast<double>(res.gpu_bytes) / 1073741824.0, 3), with_commas(res.gpu_bytes), "100.0%"});
  t.add({"capacity (" + j.cluster.gpu.name + ")", fixed(static_cast<double>(j.cluster_shape.gpu_memory_bytes) / 1073741824.0, 3),
         with_commas(j.cluster_shape.gpu_memory_bytes), ""});
  t.print(std::cout);
  if (res.fits_gpu) {
    std::cout << "fits: " << gib(j.cluster_shape.gpu_memory_bytes - res.gpu_bytes) << " headroom per GPU\n";
  } else {
    const uint64_t short_by = res.gpu_bytes - j.cluster_shape.gpu_memory_bytes;
    std::cout << "DOES NOT FIT: short by " << with_commas(short_by) << " bytes (" << gib(short_by)
              << ") per GPU; the largest component is " << to_string(dominant(res.rank)) << "\n";
  }
  std::cout << "host memory per node: " << gib(res.host_bytes_per_node) << " of " << gib(j.cluster_shape.host_memory_bytes)
            << (res.fits_host ? "" : "  DOES NOT FIT") << "\n";
  std::cout << "NVMe per node: " << fixed(static_cast<double>(res.nvme_bytes_per_node) / 1e12, 3) << " TB of "
            << fixed(static_cast<double>(j.cluster_shape.nvme_bytes) / 1e12, 2) << " TB"
            << (res.fits_nvme ? "" : "  DOES NOT FIT") << "\n";
  std::cout << "(GiB = 2^30 bytes, TB = 1e12 bytes; host and NVMe count every GPU of the node at this rank's figure)\n";
  if (show_rows) {
    std::cout << "\nRows of stage " << res.stage << ":\n";
    TextTable r({"component", "where", "tensor", "dtype", "copies", "bytes"});
    for (int i = 0; i < rows.size(); ++i) {
      const MemoryRow& row = rows[i];
      r.add({to_string(row.component), to_string(row.residence), row.tensor, to_string(row.dtype),
             with_commas(row.copies), with_commas(row.bytes)});
    }
    r.print(std::cout);
  }
}

void run_explain(const LayoutFlags& flags, const GlobalOptions& global, bool as_json, bool show_rows, double tokens) {
  const Job j = make_job(flags, Catalog::load(global.catalog_dirs));
  const MemoryInputs in{j.shape, j.layout, j.cluster_shape, j.options};
  const MemoryResult res = evaluate_memory(in);
  RowsSink rows;
  memory_rows_for_stage(in, res.stage, rows);
  const StepTime time = evaluate_time({j.shape, j.layout, j.cluster.gpu, j.cluster.node, j.network});
  if (!as_json) {
    print_text(j, res, rows, show_rows);
    print_time(j, res, time, tokens);
    return;
  }
  Json out = {{"schema", "zeroplan.explain"},
              {"version", 1},
              {"model", j.model.name},
              {"gpu", j.cluster.gpu.name},
              {"node", j.cluster.node.name},
              {"num_gpus", j.cluster.num_gpus},
              {"layout", layout_json(j.layout)},
              {"most_loaded_stage", res.stage},
              {"gpu_memory", {{"components_bytes", residence_json(res.rank, Residence::Gpu)},
                              {"total_bytes", res.gpu_bytes},
                              {"capacity_bytes", j.cluster_shape.gpu_memory_bytes},
                              {"fits", res.fits_gpu},
                              {"dominant_component", to_string(dominant(res.rank))}}},
              {"host_memory_per_node", {{"rank_components_bytes", residence_json(res.rank, Residence::Host)},
                                        {"total_bytes", res.host_bytes_per_node},
                                        {"capacity_bytes", j.cluster_shape.host_memory_bytes},
                                        {"fits", res.fits_host}}},
              {"nvme_per_node", {{"rank_components_bytes", residence_json(res.rank, Residence::Nvme)},
                                 {"total_bytes", res.nvme_bytes_per_node},
                                 {"capacity_bytes", j.cluster_shape.nvme_bytes},
                                 {"fits", res.fits_nvme}}},
              {"fits", res.fits()},
              {"time", time_json(j, time, tokens)}};
  if (show_rows) out["rows"] = rows_json(rows);
  std::cout << out.dump(2) << "\n";
}

}  // namespace

void add_explain_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("explain",
                                 "Memory per GPU/host/NVMe, step time by phase and communication of one layout");
  cmd->footer(
      "Example: zeroplan explain --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 1 --micro-batch 2 --seq 4096\n"
      "         zeroplan explain --model gpt3-175b --gpus 64 --gpu A100-80GB --tp 8 --pp 8 --sp --recompute selective");
  static LayoutFlags flags;
  static bool as_json = false, show_rows = false;
  static double tokens = 0;
  add_layout_flags(cmd, flags);
  cmd->add_option("--tokens", tokens, "Training budget in tokens: report the time to train it")->check(CLI::Range(0.0, 1e18));
  cmd->add_flag("--json", as_json, "Print the versioned JSON object (schema zeroplan.explain, version 1)");
  cmd->add_flag("--rows", show_rows, "Also list every tensor row of the most loaded rank");
  cmd->callback([&global]() { run_explain(flags, global, as_json, show_rows, tokens); });
}

}  // namespace zp
