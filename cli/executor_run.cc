// Running a plan's layout on the CPU executor, for `zeroplan run` (one rank
// of a real or emulated world, cli/cmd_run.cc) and `zeroplan validate` (one
// emulated rank per layout, cli/cmd_validate.cc): the layout checks, the
// models in the plan's precision, the trainers, and the measurements as JSON
// beside the cost model's rows.
#include "cli/executor_run.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "costmodel/layout_check.h"
#include "costmodel/memory_model.h"
#include "costmodel/model_shape.h"
#include "executor/checkpoint.h"
#include "executor/data.h"
#include "executor/data_parallel.h"
#include "executor/head_view.h"
#include "executor/llama_model.h"
#include "executor/parallel_groups.h"
#include "executor/pipeline_parallel.h"
#include "executor/tensor_parallel.h"
#include "executor/timed_communicator.h"
#include "models/input_error.h"
#include "models/param_count.h"
#ifdef ZP_HAVE_CUDA
#include "executor/cuda_device.h"
#include "kernels/device_memory.h"
#endif
#ifdef ZP_HAVE_NCCL
#include <mpi.h>

#include "executor/nccl_communicator.h"
#endif

namespace zp {
namespace {


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

// One step's row of the measurements: loss, wall time, the trainer's phases
// (a pipeline's include its transfers) and the collectives.
template <class Phases>
Json step_row(int step, float loss, double seconds, const Phases& ph, const TimedCommunicator& timed) {
  Json phases = {{"forward", ph.forward_s}, {"backward", ph.backward_s}, {"gradient_sync", ph.gradient_sync_s},
                 {"optimizer", ph.optimizer_s}, {"parameter_gather", ph.parameter_gather_s},
                 {"gradient_zeroing", ph.gradient_zeroing_s}};
  if constexpr (requires { ph.pipeline_transfer_s; }) phases["pipeline_transfer"] = ph.pipeline_transfer_s;
  return {{"step", step}, {"loss", loss}, {"seconds", seconds}, {"phases_s", phases}, {"collectives", collective_stats(timed)}};
}

// Measured against predicted: model states exactly, the activation side
// (activations, recompute workspace, logits) as a relative error.
Json comparison(const std::array<uint64_t, kNumComponents>& device, const std::array<uint64_t, kNumComponents>& host,
                const MemoryTotals& want, const MemoryTotals& want_activations, double activation_bytes_measured) {
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
  const double predicted = side([&](Component c) { return want_activations.at(Residence::Gpu, c); });
  return {{"model_states_match", states_match},
          {"activation_bytes", measured},
          {"predicted_activation_bytes", predicted},
          {"activation_error", predicted > 0 ? (measured - predicted) / predicted : 0.0}};
}

// The measurements of one rank (pipeline stage `stage`) beside the cost
// model's rows for it (the zeroplan accounting of the executor's layout).
// activation_bytes_measured < 0: what the device allocator holds now.
Json measurements(const PlanFile& plan, const Layout& l, const Communicator& comm, const Memory& memory, uint32_t stage,
                  const Json& step_rows, const Json& extra_memory, double activation_bytes_measured,
                  const std::string& plan_path) {
  // The cost model's rows for this rank (the zeroplan accounting of the
  // executor's layout), beside what the tracking allocators hold.
  const ModelShape shape = make_shape(plan.model);
  ClusterShape cluster;
  cluster.gpus_in_node = 1;
  const MemoryOptions options = resolve_options({}, l);
  RowsSink rows, activation_rows;
  memory_rows_for_stage({shape, l, cluster, options}, stage, rows);
  // The activation side compared with the activations' own peak (a pipeline
  // rank's overall peak can be its step's end, when they are gone).
  activation_rows_for_stage({shape, l, cluster, options}, stage, activation_rows);
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
              {"backend", memory.device.device().is_gpu() ? "cuda" : "cpu"},
              {"device", memory.device.device().name()},
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
              {"comparison", comparison(device_now, host_now, rows.totals(), activation_rows.totals(), activation_bytes_measured)},
              {"steps", step_rows}};
  out["memory"].update(extra_memory);
#ifdef ZP_HAVE_CUDA
  // The GPU's own view: the caching allocator's segments (what PyTorch
  // reports as reserved) and the device's used memory (context, cuBLAS and
  // NCCL included), measured, not predicted.
  if (const auto* gpu = dynamic_cast<const CudaDevice*>(&memory.device.device())) {
    out["memory"]["gpu"] = {{"reserved_bytes", gpu->caching().reserved_bytes()},
                            {"reserved_peak_bytes", gpu->caching().peak_reserved_bytes()},
                            {"allocated_peak_bytes", gpu->caching().peak_allocated_bytes()},
                            {"segments", gpu->caching().segments()},
                            {"cudaMalloc_calls", gpu->caching().source_allocations()},
                            {"device_used_bytes", cuda::device_memory_info().used_bytes()},
                            {"host_emulator", CudaDevice::host_emulator()}};
  }
#endif
  return out;
}


// Where a trainer's buffers go and what its layout asks of the optimizer.
TrainerMemory trainer_memory(Memory& memory, const Layout& l) {
  TrainerMemory t{&memory.device, &memory.host, l.offload_optimizer != Offload::None, l.offload_param != Offload::None};
  t.delayed_update = l.delayed_update;
  return t;
}

// The set-up's peak (building the model whole before ZeRO partitions it, as
// DeepSpeed does without zero.Init, holds every weight and gradient for a
// moment), after which the allocators' peaks are the training steps'.
Json setup_peaks(Memory& memory) {
  const Json j = {{"setup_peak_bytes", memory.device.peak_bytes()}, {"setup_host_peak_bytes", memory.host.peak_bytes()}};
  memory.device.reset_peak();
  memory.host.reset_peak();
  return j;
}

// What a model keeps for backward: the layout's recompute and attention.
template <class Model>
void set_activation_options(Model& model, const Layout& l) {
  model.set_recompute(l.recompute == Recompute::Full);
  model.set_selective_recompute(l.recompute == Recompute::Selective);
  model.set_flash_attention(l.attention == Attention::Flash);
}

// Trains `model` on this rank's slice of each batch; returns the
// measurements (the leader only; null elsewhere).
template <class Model>
Json train(Model& model, const PlanFile& plan, const Layout& l, Communicator& comm, Memory& memory, bool leader,
          const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const std::string& text = o.text;
  const int steps = o.steps;
  AdamConfig adam;
  adam.lr = 3e-3f;
  // Every collective the trainer makes is counted and timed, step by step.
  TimedCommunicator timed(comm);
  DataParallelTrainer<Model> trainer(model, timed, l.zero_stage, adam, trainer_memory(memory, l));
  const int first_step = resume(trainer, o, comm);
  Json extra = setup_peaks(memory);
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
    memory.device.device().synchronize();  // a GPU's queued work belongs to this step
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    step_rows.push_back(step_row(first_step + s, loss, seconds, trainer.last_phases(), timed));
    if (leader && !o.quiet) std::cout << "step " << s << "  loss " << loss << "  " << seconds * 1e3 << " ms\n";
  }
  trainer.finish_pending();  // a delayed update's last step reaches the model
  if (!o.save_dir.empty()) save(trainer, o, comm);
  if (!leader) return Json();
  extra["zero3_gathered_peak_bytes"] = trainer.zero3_peak_gathered_bytes();
  return measurements(plan, l, comm, memory, 0, step_rows, extra, -1, plan_path);
}

// Trains this rank's part of a tensor- and/or pipeline-parallel layout (with
// data parallelism across the pipelines); returns its measurements on the
// first tensor-parallel rank of the first pipeline of each stage (and on an
// emulated rank), null elsewhere.
// `chunks`: the stage's model, or under the interleaved schedule its vpp
// chunks in order.
template <class Model>
Json train_parallel(const std::vector<Model*>& chunks, const PlanFile& plan, const Layout& l, Communicator& world,
                   ParallelGroups& g, Memory& memory, const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const std::string& text = o.text;
  const int steps = o.steps;
  const uint32_t stage = static_cast<uint32_t>(g.pp_rank);
  for (Model* chunk : chunks) set_activation_options(*chunk, l);
  AdamConfig adam;
  adam.lr = 3e-3f;
  TimedCommunicator timed(*g.pp);
  const PipeSchedule schedule = l.schedule == Schedule::GPipe        ? PipeSchedule::GPipe
                                : l.schedule == Schedule::Interleaved ? PipeSchedule::Interleaved
                                                                      : PipeSchedule::OneFOneB;
  PipelineTrainer<Model> trainer(chunks, timed, schedule, adam, trainer_memory(memory, l), g.dp.get(), l.zero_stage);
  const int first_step = resume(trainer, o, world);
  Json extra = setup_peaks(memory);
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
    memory.device.device().synchronize();  // a GPU's queued work belongs to this step
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    step_rows.push_back(step_row(first_step + s, loss, seconds, trainer.last_phases(), timed));
    if (world.rank() == 0 && !world.emulated() && !o.quiet) std::cout << "step " << s << "  loss " << loss << "  " << seconds * 1e3 << " ms\n";
  }
  trainer.finish_pending();
  if (!o.save_dir.empty()) save(trainer, o, world);
  if (!writer && !world.emulated()) return Json();
  extra["max_in_flight_microbatches"] = trainer.max_in_flight();
  extra["activation_peak_bytes"] = trainer.peak_activation_bytes();
  return measurements(plan, l, world, memory, stage, step_rows, extra, static_cast<double>(trainer.peak_activation_bytes()),
                      plan_path);
}

}  // namespace

namespace {

// Builds this rank's model in scalar T (float: fp32; bf16: mixed precision)
// and trains it.
template <class T>
Json run_model(const PlanFile& plan, const Layout& l, Communicator& comm, Memory& memory, bool leader, const RunOptions& o) {
  if (l.tp > 1 || l.pp > 1) {
    // This rank's stage (and tensor-parallel slice) of the model, in Megatron-Core's group order.
    ParallelGroups g = make_parallel_groups(comm, l);
    const TensorParallel tp{l.tp > 1 ? g.tp.get() : nullptr, l.sequence_parallel};
    const auto stage = static_cast<uint32_t>(g.pp_rank);
    // The stage's parts: one, or its vpp chunks (virtual stages chunk x pp + stage).
    std::vector<PipelineStage> parts;
    if (l.schedule == Schedule::Interleaved) {
      for (uint32_t c = 0; c < l.vpp; ++c) parts.push_back(pipeline_chunk(plan.model.num_layers, l, stage, c));
    } else {
      parts.push_back(pipeline_stage(plan.model.num_layers, l, stage));
    }
    auto build_and_train = [&](auto make) {
      using Model = typename decltype(make(parts[0]))::element_type;
      std::vector<std::unique_ptr<Model>> owned;
      std::vector<Model*> chunks;
      for (const PipelineStage& part : parts) {
        owned.push_back(make(part));
        chunks.push_back(owned.back().get());
      }
      return train_parallel(chunks, plan, l, comm, g, memory, o);
    };
    if (plan.model.mlp == MlpKind::SwiGlu) {
      return build_and_train([&](const PipelineStage& part) {
        return std::make_unique<LlamaModel<T>>(llama_config(plan.model), 1234, &memory.device, part, tp);
      });
    }
    return build_and_train([&](const PipelineStage& part) {
      return std::make_unique<GptModel<T>>(gpt_config(plan.model), 1234, &memory.device, part, tp);
    });
  }
  auto data_parallel = [&](auto& model) {
    set_activation_options(model, l);
    return train(model, plan, l, comm, memory, leader, o);
  };
  if (plan.model.mlp == MlpKind::SwiGlu) {
    LlamaModel<T> model(llama_config(plan.model), 1234, &memory.device);
    return data_parallel(model);
  }
  GptModel<T> model(gpt_config(plan.model), 1234, &memory.device);
  return data_parallel(model);
}

}  // namespace

// What the CPU executor runs so far, checked before any rank starts: a plan
// outside it is refused with the reason.
Layout runnable_layout(const std::string& path, const PlanFile& p, bool on_gpu) {
  const Layout& l = p.layout;
  auto refuse = [&](const std::string& what) { throw InputError(path + ": layout " + what); };
  // First whether the layout can run the model at all (the planner's rules).
  ClusterShape any_gpu;
  any_gpu.has_bf16 = true;
  const std::string invalid = check_layout(make_shape(p.model), l, any_gpu, l.world());
  if (!invalid.empty()) refuse(invalid);
  if (l.ep != 1) refuse("ep " + std::to_string(l.ep) + ": expert parallelism is not built in the executor yet");
  if (l.precision == Precision::Fp16) {
    refuse("precision fp16: the executor runs bf16 mixed precision or fp32 (fp16 needs loss scaling, not built)");
  }
  if (l.recompute_layers != 0 || l.partition_activations || l.checkpoints_to_cpu) {
    refuse("recompute_layers / partition_activations / checkpoints_to_cpu: not built in the executor yet");
  }
  if (l.offload_param == Offload::Nvme) refuse("offload_param nvme: the executor offloads parameters to host memory only");
  if (l.offload_optimizer == Offload::Nvme) refuse("offload_optimizer nvme: the executor offloads to host memory only");
  if (l.optimizer != Optimizer::Adam) refuse("optimizer: the executor runs AdamW only");
  if (l.dropout == Dropout::On) refuse("dropout on: the executor trains without dropout");
  if (l.delayed_update && l.offload_optimizer != Offload::Cpu) refuse("delayed_update: needs offload_optimizer cpu");
  if (l.tile_factor != 1 || l.fp32_grad_accum) refuse("tile_factor / fp32_grad_accum: not used by the CPU executor");
  if (!vocab_reaches_every_rank(p.model.vocab_size, l.tp)) {
    refuse("tp " + std::to_string(l.tp) + ": a vocabulary of " + std::to_string(p.model.vocab_size) + " in shards of " +
           std::to_string(vocab_shard_rows(p.model.vocab_size, l.tp)) + " rows leaves the last rank no tokens");
  }
  if (on_gpu && l.attention == Attention::Flash && p.model.head_dim > kCudaFlashMaxHeadDim) {
    refuse("attention flash: the CUDA flash kernels take head_dim up to " + std::to_string(kCudaFlashMaxHeadDim) +
           ", the model has " + std::to_string(p.model.head_dim) + " (use --attention materialized)");
  }
  Layout run = l;
  // The executor's own accounting (its attention is the layout's: flash-style
  // keeps each row's log-sum-exp, materialised the softmax output); one
  // process stands for each rank (no NCCL or CUDA context: those overheads
  // are not compared).
  run.framework = Framework::Zeroplan;
  run.emulated = true;
  // The executor trains without dropout (no masks are kept), whatever the
  // model was trained with.
  run.dropout = Dropout::Off;
  return run;
}

std::unique_ptr<Device> make_run_device(const std::string& name) {
  if (name == "cpu") return nullptr;
  if (name != "cuda") throw InputError("--device " + name + ": expected cpu or cuda");
#ifdef ZP_HAVE_CUDA
  try {
    return std::make_unique<CudaDevice>(0);
  } catch (const std::runtime_error& e) {
    throw InputError(std::string("--device cuda: no usable GPU (") + e.what() + ")");
  }
#else
  throw InputError("--device cuda: this zeroplan was built without CUDA (ZP_WITH_CUDA=OFF or no nvcc)");
#endif
}

void check_gpu_world() {
#ifdef ZP_HAVE_NCCL
  if (!cuda::device_present()) throw InputError("--device cuda: no GPU on this node");
#else
  throw InputError("--device cuda under mpirun: this zeroplan was built without NCCL");
#endif
}

GpuWorld make_gpu_world() {
  GpuWorld w;
#ifdef ZP_HAVE_NCCL
  auto nccl = std::make_unique<NcclCommunicator>(MPI_COMM_WORLD);
  w.gpu = std::make_unique<CudaDevice>(nccl->device());
  w.comm = std::move(nccl);
#endif
  return w;
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

Json run_rank(const PlanFile& plan, const Layout& l, Communicator& world, Memory& memory, bool leader, const RunOptions& o) {
  return l.precision == Precision::Bf16 ? run_model<bf16>(plan, l, world, memory, leader, o)
                                        : run_model<float>(plan, l, world, memory, leader, o);
}

}  // namespace zp
