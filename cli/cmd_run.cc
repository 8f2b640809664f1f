// `zeroplan run --plan plan.json`: runs a plan's layout as real training steps
// on the CPU executor (single process, under mpirun for data parallelism, or
// one emulated rank of a larger data-parallel group with --emulate-rank) and
// writes the measurements beside the plan: losses, phase times, the tracking
// allocators' bytes by component beside the cost model's rows. What the CPU
// executor runs so far: GPT-2 and Llama-style models in fp32 or bf16 mixed
// precision; data parallelism with ZeRO 0-3, gradient accumulation,
// optimizer and (ZeRO-3) parameter offload to host memory; selective and full
// recompute; tensor (optionally sequence) and pipeline parallelism (GPipe or 1F1B, one stage per
// process, each stage writing its own measurements) with any of those ZeRO
// and offload settings across the pipelines. Other plans are refused with a one-line reason on rank 0 and
// a non-zero exit on every rank.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "executor/checkpoint.h"
#include "executor/data.h"
#include "executor/data_parallel.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"
#include "executor/mpi_communicator.h"
#include "executor/parallel_groups.h"
#include "executor/pipeline_parallel.h"
#include "executor/timed_communicator.h"
#include "cli/plan_file.h"
#include "costmodel/layout_check.h"
#include "costmodel/memory_model.h"
#include "costmodel/model_shape.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "models/param_count.h"

namespace zp {
namespace {

// The rank's tracking allocators: what its accelerator holds (on the CPU
// backend, tagged host memory) and the host memory of offload.
struct Memory {
  TrackingAllocator device, host;
};

// What `zeroplan run` was asked to do.
struct RunOptions {
  std::string plan_path, text, out_path;
  std::string save_dir, resume_dir;  // checkpoints: one file per rank, rank<r>.ckpt
  int steps = 10, emulate_rank = -1;
};

std::string checkpoint_path(const std::string& dir, const Communicator& world) {
  return (std::filesystem::path(dir) / ("rank" + std::to_string(world.rank()) + ".ckpt")).string();
}

// --resume: this rank's checkpoint into the trainer; returns the step to
// continue from. The ranks agree before any step, so a missing or
// mismatched file on one rank stops them all (exit 2), none waiting in a
// collective for it; the rank that failed names its file.
template <class Trainer>
int resume(Trainer& trainer, const RunOptions& o, Communicator& world) {
  if (o.resume_dir.empty()) return 0;
  const std::string path = checkpoint_path(o.resume_dir, world);
  std::string error;
  int step = 0;
  try {
    const CheckpointState s = load_checkpoint(path);
    trainer.restore(s);
    step = static_cast<int>(s.step);
  } catch (const InputError& e) {
    error = e.what();
  } catch (const std::runtime_error& e) {  // restore(): sizes of another model or layout
    error = path + ": " + e.what();
  }
  float failed = error.empty() ? 0.0f : 1.0f;
  world.all_reduce_sum(&failed, 1);
  if (failed > 0) throw InputError(error.empty() ? "--resume " + o.resume_dir + ": another rank could not load its checkpoint" : error);
  return step;
}

// --save: this rank's checkpoint (written to a temporary name, then renamed).
template <class Trainer>
void save(const Trainer& trainer, const RunOptions& o, const Communicator& world) {
  std::error_code ec;
  std::filesystem::create_directories(o.save_dir, ec);
  if (ec) throw InputError("--save " + o.save_dir + ": cannot create the directory: " + ec.message());
  save_checkpoint(checkpoint_path(o.save_dir, world), trainer.state());
}

// What the CPU executor runs so far, checked before any rank starts: a plan
// outside it is refused with the reason.
Layout runnable_layout(const std::string& path, const PlanFile& p) {
  const Layout& l = p.layout;
  auto refuse = [&](const std::string& what) { throw InputError(path + ": layout " + what); };
  // First whether the layout can run the model at all (the planner's rules).
  ClusterShape any_gpu;
  any_gpu.has_bf16 = true;
  const std::string invalid = check_layout(make_shape(p.model), l, any_gpu, l.world());
  if (!invalid.empty()) refuse(invalid);
  if (l.ep != 1) refuse("ep " + std::to_string(l.ep) + ": expert parallelism is not built in the executor yet");
  if (l.tp > 1 || l.pp > 1) {
    // Tensor and pipeline parallelism (with data parallelism across them: 3D).
    if (l.schedule == Schedule::Interleaved) refuse("schedule interleaved: the executor runs GPipe and 1F1B");
  }
  if (l.precision == Precision::Fp16) {
    refuse("precision fp16: the executor runs bf16 mixed precision or fp32 (fp16 needs loss scaling, not built)");
  }
  if (l.recompute_layers != 0 || l.partition_activations || l.checkpoints_to_cpu) {
    refuse("recompute_layers / partition_activations / checkpoints_to_cpu: not built in the executor yet");
  }
  if (l.offload_param == Offload::Nvme) refuse("offload_param nvme: the executor offloads parameters to host memory only");
  if (l.offload_optimizer == Offload::Nvme) refuse("offload_optimizer nvme: the executor offloads to host memory only");
  if (l.optimizer != Optimizer::Adam) refuse("optimizer: the executor runs AdamW only");
  if (l.delayed_update) refuse("delayed_update: not built in the executor yet");
  if (l.tile_factor != 1 || l.fp32_grad_accum) refuse("tile_factor / fp32_grad_accum: not used by the CPU executor");
  Layout run = l;
  // The executor's own accounting: its CPU kernels keep the softmax output
  // (materialized attention), one process stands for each rank (no NCCL or
  // CUDA context: those overheads are not compared).
  run.framework = Framework::Zeroplan;
  run.attention = Attention::Materialized;
  run.emulated = true;
  return run;
}

void write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) throw InputError(tmp + ": cannot write");
    out << content;
    if (!out.flush()) throw InputError(tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(path + ": cannot rename into place: " + ec.message());
}

// The build that ran: version, compiler, build type, whether CUDA was built in.
Json build_info() {
#ifdef ZP_HAVE_CUDA
  const bool cuda = true;
#else
  const bool cuda = false;
#endif
  return {{"version", ZP_VERSION}, {"compiler", ZP_COMPILER}, {"build_type", ZP_BUILD_TYPE}, {"cuda", cuda}};
}

// Bytes per component, the nonzero ones, as JSON.
Json component_bytes(const std::array<uint64_t, kNumComponents>& bytes) {
  Json out = Json::object();
  for (int c = 0; c < kNumComponents; ++c) {
    if (bytes[c] > 0) out[to_string(static_cast<Component>(c))] = bytes[c];
  }
  return out;
}

std::array<uint64_t, kNumComponents> current(const TrackingAllocator& a) {
  std::array<uint64_t, kNumComponents> out{};
  for (int c = 0; c < kNumComponents; ++c) out[c] = a.current_bytes(static_cast<Component>(c));
  return out;
}

// Calls, bytes and seconds of each kind of collective made since the last reset.
Json collective_stats(const TimedCommunicator& timed) {
  Json out = Json::object();
  for (int i = 0; i < kNumCollectives; ++i) {
    const CollectiveStats& s = timed.stats(static_cast<Collective>(i));
    if (s.calls > 0) out[to_string(static_cast<Collective>(i))] = {{"calls", s.calls}, {"bytes", s.bytes}, {"seconds", s.seconds}};
  }
  return out;
}

// Measured against predicted: model states exactly, the activation side
// (activations, recompute workspace, logits) as a relative error.
Json comparison(const std::array<uint64_t, kNumComponents>& device, const std::array<uint64_t, kNumComponents>& host,
                const MemoryTotals& want, double activation_bytes_measured) {
  bool states_match = true;
  for (Component c : {Component::Weights, Component::Gradients, Component::MainGradients, Component::MasterWeights,
                      Component::OptimizerStates}) {
    const int i = static_cast<int>(c);
    states_match &= device[i] == want.at(Residence::Gpu, c) && host[i] == want.at(Residence::Host, c);
  }
  auto side = [](auto bytes) {
    return static_cast<double>(bytes(Component::Activations) + bytes(Component::RecomputeWorkspace) +
                               bytes(Component::Logits));
  };
  const double measured = activation_bytes_measured >= 0 ? activation_bytes_measured
                                                         : side([&](Component c) { return device[static_cast<int>(c)]; });
  const double predicted = side([&](Component c) { return want.at(Residence::Gpu, c); });
  return {{"model_states_match", states_match},
          {"activation_bytes", measured},
          {"predicted_activation_bytes", predicted},
          {"activation_error", predicted > 0 ? (measured - predicted) / predicted : 0.0}};
}

// The measurements of one rank (pipeline stage `stage`) beside the cost
// model's rows for it (the zeroplan accounting of the executor's layout).
// activation_bytes_measured < 0: what the device allocator holds now.
void write_measurements(const PlanFile& plan, const Layout& l, const Communicator& comm, const Memory& memory,
                        uint32_t stage, const Json& step_rows, const Json& extra_memory, double activation_bytes_measured,
                        const std::string& plan_path, std::string out_path) {
  // The cost model's rows for this rank (the zeroplan accounting of the
  // executor's layout), beside what the tracking allocators hold.
  const ModelShape shape = make_shape(plan.model);
  ClusterShape cluster;
  cluster.gpus_in_node = 1;
  const MemoryOptions options = resolve_options({}, l);
  RowsSink rows;
  memory_rows_for_stage({shape, l, cluster, options}, stage, rows);
  std::array<uint64_t, kNumComponents> predicted_device{}, predicted_host{};
  for (int c = 0; c < kNumComponents; ++c) {
    if (is_runtime_overhead(static_cast<Component>(c))) continue;
    predicted_device[c] = rows.totals().bytes[static_cast<int>(Residence::Gpu)][c];
    predicted_host[c] = rows.totals().bytes[static_cast<int>(Residence::Host)][c];
  }
  const auto device_now = current(memory.device), host_now = current(memory.host);
  Json out = {{"schema", "zeroplan.measured"},
              {"version", 2},
              {"plan", plan_path},
              {"backend", "cpu"},
              {"build", build_info()},
              {"precision", to_string(l.precision)},
              {"communicator", comm.name()},
              {"emulated", comm.emulated()},
              {"world", comm.size()},
              {"rank", comm.rank()},
              {"pipeline_stage", stage},
              {"layout", describe(l)},
              {"parameters", count_params(plan.model).total},
              {"memory", {{"device_peak_bytes", memory.device.peak_bytes()},
                          {"device_at_peak", component_bytes(memory.device.at_peak())},
                          {"device_after_step", component_bytes(device_now)},
                          {"host_after_step", component_bytes(host_now)}}},
              {"predicted_memory", {{"device", component_bytes(predicted_device)}, {"host", component_bytes(predicted_host)}}},
              {"comparison", comparison(device_now, host_now, rows.totals(), activation_bytes_measured)},
              {"steps", step_rows}};
  out["memory"].update(extra_memory);
  if (out_path.empty()) out_path = plan_path + ".measured.json";
  write_atomically(out_path, out.dump(2) + "\n");
  std::cout << "wrote " << out_path << "\n";
}


// Trains `model` on this rank's slice of each batch and writes the
// measurements (the leader only).
template <class Model>
int train(Model& model, const PlanFile& plan, const Layout& l, Communicator& comm, Memory& memory, bool leader,
          const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const std::string& text = o.text;
  const int steps = o.steps;
  AdamConfig adam;
  adam.lr = 3e-3f;
  TrainerMemory trainer_memory{&memory.device, &memory.host, l.offload_optimizer != Offload::None,
                               l.offload_param != Offload::None};
  // Every collective the trainer makes is counted and timed, step by step.
  TimedCommunicator timed(comm);
  DataParallelTrainer<Model> trainer(model, timed, l.zero_stage, adam, trainer_memory);
  const int first_step = resume(trainer, o, comm);
  const int mb = static_cast<int>(l.micro_batch), ga = static_cast<int>(l.grad_accum), T = static_cast<int>(l.seq_len);
  const int local = mb * ga;
  std::unique_ptr<ByteCorpus> bytes;
  if (!text.empty()) {
    if (plan.model.vocab_size < 256) throw InputError("--text: byte-level data needs a vocabulary of at least 256");
    bytes = std::make_unique<ByteCorpus>(text);
  }
  const SyntheticCorpus synthetic(static_cast<int>(plan.model.vocab_size), 42);
  Json step_rows = Json::array();
  for (int s = 0; s < steps; ++s) {
    const int first_row = comm.rank() * local;
    const Batch b = bytes ? bytes->batch(static_cast<uint64_t>(first_step + s), first_row, local, T)
                          : synthetic.batch(static_cast<uint64_t>(first_step + s), first_row, local, T);
    timed.reset();
    const auto start = std::chrono::steady_clock::now();
    const float loss = trainer.step(b.tokens.data(), b.targets.data(), mb, T, ga);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& ph = trainer.last_phases();
    step_rows.push_back({{"step", first_step + s}, {"loss", loss}, {"seconds", seconds},
                         {"phases_s", {{"forward", ph.forward_s}, {"backward", ph.backward_s},
                                       {"gradient_sync", ph.gradient_sync_s}, {"optimizer", ph.optimizer_s},
                                       {"parameter_gather", ph.parameter_gather_s}}},
                         {"collectives", collective_stats(timed)}});
    if (leader) std::cout << "step " << s << "  loss " << loss << "  " << seconds * 1e3 << " ms\n";
  }
  if (!o.save_dir.empty()) save(trainer, o, comm);
  if (!leader) return 0;
  write_measurements(plan, l, comm, memory, 0, step_rows, {{"zero3_gathered_peak_bytes", trainer.zero3_peak_gathered_bytes()}},
                     -1, plan_path, o.out_path);
  return 0;
}

// Trains this rank's part of a tensor- and/or pipeline-parallel layout (with
// data parallelism across the pipelines) and writes its measurements: the
// first tensor-parallel rank of the first pipeline writes one file per stage.
template <class Model>
int train_parallel(Model& model, const PlanFile& plan, const Layout& l, Communicator& world, ParallelGroups& g,
                   Memory& memory, const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const std::string& text = o.text;
  const int steps = o.steps;
  std::string out_path = o.out_path;
  const uint32_t stage = static_cast<uint32_t>(g.pp_rank);
  model.set_recompute(l.recompute == Recompute::Full);
  model.set_selective_recompute(l.recompute == Recompute::Selective);
  AdamConfig adam;
  adam.lr = 3e-3f;
  TimedCommunicator timed(*g.pp);
  PipelineTrainer<Model> trainer(model, timed, l.schedule == Schedule::GPipe ? PipeSchedule::GPipe : PipeSchedule::OneFOneB,
                                 adam,
                                 TrainerMemory{&memory.device, &memory.host, l.offload_optimizer != Offload::None,
                                               l.offload_param != Offload::None},
                                 g.dp.get(), l.zero_stage);
  const int first_step = resume(trainer, o, world);
  const int mb = static_cast<int>(l.micro_batch), ga = static_cast<int>(l.grad_accum), T = static_cast<int>(l.seq_len);
  std::unique_ptr<ByteCorpus> bytes;
  if (!text.empty()) {
    if (plan.model.vocab_size < 256) throw InputError("--text: byte-level data needs a vocabulary of at least 256");
    bytes = std::make_unique<ByteCorpus>(text);
  }
  const SyntheticCorpus synthetic(static_cast<int>(plan.model.vocab_size), 42);
  const bool writer = g.tp_rank == 0 && g.dp_rank == 0;
  Json step_rows = Json::array();
  for (int s = 0; s < steps; ++s) {
    // Each pipeline takes its data-parallel slice; every stage and tensor-
    // parallel rank of it sees that slice (the first stage reads its tokens, the last its targets).
    const int first_row = g.dp_rank * mb * ga;
    const Batch b = bytes ? bytes->batch(static_cast<uint64_t>(first_step + s), first_row, mb * ga, T)
                          : synthetic.batch(static_cast<uint64_t>(first_step + s), first_row, mb * ga, T);
    timed.reset();
    const auto start = std::chrono::steady_clock::now();
    const float loss = trainer.step(b.tokens.data(), b.targets.data(), mb, T, ga);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& ph = trainer.last_phases();
    step_rows.push_back({{"step", first_step + s}, {"loss", loss}, {"seconds", seconds},
                         {"phases_s", {{"forward", ph.forward_s}, {"backward", ph.backward_s},
                                       {"pipeline_transfer", ph.pipeline_transfer_s}, {"gradient_sync", ph.gradient_sync_s},
                                       {"optimizer", ph.optimizer_s}, {"parameter_gather", ph.parameter_gather_s}}},
                         {"collectives", collective_stats(timed)}});
    if (world.rank() == 0 && !world.emulated()) std::cout << "step " << s << "  loss " << loss << "  " << seconds * 1e3 << " ms\n";
  }
  if (!o.save_dir.empty()) save(trainer, o, world);
  if (!writer && !world.emulated()) return 0;
  // <plan>.measured.json for stage 0, <plan>.measured.stage<s>.json for the others.
  if (out_path.empty()) out_path = plan_path + ".measured.json";
  if (stage > 0) out_path = out_path.substr(0, out_path.size() - 5) + ".stage" + std::to_string(stage) + ".json";
  write_measurements(plan, l, world, memory, stage, step_rows,
                     {{"max_in_flight_microbatches", trainer.max_in_flight()},
                      {"activation_peak_bytes", trainer.peak_activation_bytes()}},
                     static_cast<double>(trainer.peak_activation_bytes()), plan_path, out_path);
  return 0;
}

// Builds this rank's model in scalar T (float: fp32; bf16: mixed precision)
// and trains it.
template <class T>
int run_model(const PlanFile& plan, const Layout& l, Communicator& comm, Memory& memory, bool leader, const RunOptions& o) {
  if (l.tp > 1 || l.pp > 1) {
    // This rank's stage (and tensor-parallel slice) of the model, in Megatron-Core's group order.
    ParallelGroups g = make_parallel_groups(comm, l);
    const PipelineStage part = pipeline_stage(plan.model.num_layers, l, static_cast<uint32_t>(g.pp_rank));
    const TensorParallel tp{l.tp > 1 ? g.tp.get() : nullptr, l.sequence_parallel};
    if (plan.model.mlp == MlpKind::SwiGlu) {
      LlamaModel<T> model(llama_config(plan.model), 1234, &memory.device, part, tp);
      return train_parallel(model, plan, l, comm, g, memory, o);
    }
    GptModel<T> model(gpt_config(plan.model), 1234, &memory.device, part, tp);
    return train_parallel(model, plan, l, comm, g, memory, o);
  }
  auto data_parallel = [&](auto& model) {
    model.set_recompute(l.recompute == Recompute::Full);
    model.set_selective_recompute(l.recompute == Recompute::Selective);
    return train(model, plan, l, comm, memory, leader, o);
  };
  if (plan.model.mlp == MlpKind::SwiGlu) {
    LlamaModel<T> model(llama_config(plan.model), 1234, &memory.device);
    return data_parallel(model);
  }
  GptModel<T> model(gpt_config(plan.model), 1234, &memory.device);
  return data_parallel(model);
}

int run(const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const int emulate_rank = o.emulate_rank;
  // Under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE) the group is MPI_COMM_WORLD.
  const bool under_mpi = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> comm;
  int error = 0;
  std::string message;
  PlanFile plan;
  Layout l;
  try {
    plan = read_plan_file(plan_path);
    l = runnable_layout(plan_path, plan);
  } catch (const InputError& e) {
    error = 1;
    message = e.what();
  }
  if (under_mpi) {
    session = std::make_unique<MpiSession>(nullptr, nullptr);
    comm = std::make_unique<MpiCommunicator>();
  }
  const int world = comm ? comm->size() : 1;
  if (!error) {
    if (emulate_rank >= 0) {
      if (under_mpi) {
        error = 1;
        message = "--emulate-rank: runs in one process, not under mpirun";
      } else if (emulate_rank >= static_cast<int>(l.world())) {
        error = 1;
        message = "--emulate-rank " + std::to_string(emulate_rank) + ": expected a rank below dp x pp = " + std::to_string(l.world());
      } else {
        comm = std::make_unique<LoopbackCommunicator>(emulate_rank, static_cast<int>(l.world()));
      }
    } else if (static_cast<uint64_t>(world) != l.world()) {
      error = 1;
      message = plan_path + ": layout dp " + std::to_string(l.dp) + " x pp " + std::to_string(l.pp) + " needs " +
                std::to_string(l.world()) + " processes; this run has " + std::to_string(world) + " (use mpirun -np " +
                std::to_string(l.world()) + " or --emulate-rank)";
    }
  }
  if (!comm) comm = std::make_unique<LoopbackCommunicator>(0, 1);
  // Every rank agrees on failure, so none waits for another in a collective.
  float flag = static_cast<float>(error);
  if (under_mpi) comm->all_reduce_sum(&flag, 1);
  if (flag > 0) {
    if (comm->rank() == 0) std::cerr << "zeroplan: " << (message.empty() ? "another rank rejected the plan" : message) << "\n";
    return 2;
  }
  // The process that reports: rank 0, or the one process of an emulated run.
  const bool leader = comm->rank() == 0 || comm->emulated();
  Memory memory;
  return l.precision == Precision::Bf16 ? run_model<bf16>(plan, l, *comm, memory, leader, o)
                                        : run_model<float>(plan, l, *comm, memory, leader, o);
}

}  // namespace

void add_run_command(CLI::App& app, const GlobalOptions& global) {
  (void)global;
  static RunOptions o;
  auto* cmd = app.add_subcommand("run", "Train a plan's layout on the CPU executor and measure it");
  cmd->footer(
      "Example: zeroplan emit --format zeroplan --model M.json --gpu H100-80GB --gpus 2 --out run/\n"
      "         mpirun -np 2 zeroplan run --plan run/plan.json --steps 20");
  cmd->add_option("--plan", o.plan_path, "A plan file from `zeroplan emit --format zeroplan`")->required();
  cmd->add_option("--steps", o.steps, "Training steps")->check(CLI::Range(1, 1000000));
  cmd->add_option("--emulate-rank", o.emulate_rank, "Run as this rank of the plan's dp x tp x pp ranks, in one process")
      ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--text", o.text, "Train on this file's bytes instead of the synthetic corpus")->check(CLI::ExistingFile);
  cmd->add_option("--out", o.out_path, "Where to write the measurements (default: <plan>.measured.json)");
  cmd->add_option("--save", o.save_dir, "After the last step, write each rank's checkpoint to DIR/rank<r>.ckpt");
  cmd->add_option("--resume", o.resume_dir, "Start from the checkpoints in DIR (the steps continue from theirs)")
      ->check(CLI::ExistingDirectory);
  cmd->callback([]() {
    const int code = run(o);
    if (code != 0) std::exit(code);
  });
}

}  // namespace zp
