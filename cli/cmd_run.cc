// `zeroplan run --plan plan.json`: runs a plan's layout as real training steps
// on the CPU executor or, with --device cuda, the CUDA backend (single
// process, under mpirun for data parallelism over MPI or, on GPUs, NCCL, or
// one emulated rank of a larger data-parallel group with --emulate-rank) and
// writes the measurements beside the plan: losses, phase times, the tracking
// allocators' bytes by component beside the cost model's rows. What the CPU
// executor runs so far: GPT-2 and Llama-style models in fp32 or bf16 mixed
// precision; data parallelism with ZeRO 0-3, gradient accumulation,
// optimizer and (ZeRO-3) parameter offload to host memory; selective and full
// recompute; tensor (optionally sequence) and pipeline parallelism (GPipe or
// 1F1B, one stage per process, each stage writing its own measurements) with
// any of those ZeRO and offload settings across the pipelines. Other plans
// are refused with a one-line reason on rank 0 and a non-zero exit on every
// rank. The running itself is cli/executor_run.cc.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/executor_run.h"
#include "cli/host_memory.h"
#include "cli/plan_file.h"
#include "executor/loopback_communicator.h"
#include "executor/mpi_communicator.h"
#include "models/input_error.h"

namespace zp {
namespace {

int run(const RunOptions& o) {
  const std::string& plan_path = o.plan_path;
  const int emulate_rank = o.emulate_rank;
  // Under mpirun (OpenMPI sets OMPI_COMM_WORLD_SIZE) the group is MPI_COMM_WORLD.
  const bool under_mpi = std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr;
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Device> gpu;  // before the communicator and the allocators that use it
  std::unique_ptr<Communicator> comm;
  int error = 0;
  std::string message;
  PlanFile plan;
  Layout l;
  try {
    plan = read_plan_file(plan_path);
    l = runnable_layout(plan_path, plan, o.device == "cuda");
    // Every process of this node (OpenMPI's local size under mpirun) draws the model's initial values.
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    check_host_memory(plan_path, plan, l, o.device == "cuda", local ? std::max(1, std::atoi(local)) : 1);
    if (!under_mpi) gpu = make_run_device(o.device);
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
        comm = std::make_unique<LoopbackCommunicator>(emulate_rank, static_cast<int>(l.world()),
                                                      gpu ? *gpu : host_device());
      }
    } else if (static_cast<uint64_t>(world) != l.world()) {
      error = 1;
      message = plan_path + ": layout dp " + std::to_string(l.dp) + " x pp " + std::to_string(l.pp) + " needs " +
                std::to_string(l.world()) + " processes; this run has " + std::to_string(world) + " (use mpirun -np " +
                std::to_string(l.world()) + " or --emulate-rank)";
    }
  }
  if (!comm) comm = std::make_unique<LoopbackCommunicator>(0, 1, gpu ? *gpu : host_device());
  // Every rank agrees on failure, so none waits for another in a collective.
  auto agree = [&] {
    float flag = static_cast<float>(error);
    if (under_mpi) comm->all_reduce_sum(&flag, 1);
    if (flag > 0 && comm->rank() == 0) {
      std::cerr << "zeroplan: " << (message.empty() ? "another rank rejected the plan" : message) << "\n";
    }
    return flag == 0;
  };
  if (!agree()) return 2;
  // Under mpirun on GPUs the ranks' collectives go over NCCL (one GPU per
  // process). Every rank first checks, and agrees over MPI, that it can take
  // part: NCCL's set-up is collective, and a rank failing inside it would
  // leave the others waiting.
  std::unique_ptr<Communicator> control;
  if (under_mpi && o.device == "cuda") {
    try {
      check_gpu_world();
    } catch (const InputError& e) {
      error = 1;
      message = e.what();
    }
    if (!agree()) return 2;
    GpuWorld w = make_gpu_world();
    control = std::move(comm);  // kept: NCCL's bootstrap duplicated MPI's world
    comm = std::move(w.comm);
    gpu = std::move(w.gpu);
  }
  // The process that reports: rank 0, or the one process of an emulated run.
  const bool leader = comm->rank() == 0 || comm->emulated();
  Memory memory(gpu ? *gpu : host_device());
  const Json measured = run_rank(plan, l, *comm, memory, leader, o);
  if (measured.is_null()) return 0;
  // <plan>.measured.json for stage 0, <plan>.measured.stage<s>.json for the others.
  std::string out_path = o.out_path.empty() ? plan_path + ".measured.json" : o.out_path;
  const int stage = measured.at("pipeline_stage").get<int>();
  if (stage > 0) out_path = out_path.substr(0, out_path.size() - 5) + ".stage" + std::to_string(stage) + ".json";
  write_atomically(out_path, measured.dump(2) + "\n");
  std::cout << "wrote " << out_path << "\n";
  return 0;
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
  cmd->add_option("--device", o.device, "cpu (default) or cuda: the backend the layout runs on")
      ->check(CLI::IsMember({"cpu", "cuda"}));
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
