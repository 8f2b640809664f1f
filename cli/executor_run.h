// Running a plan's layout on the CPU executor: shared by `zeroplan run`
// (cli/cmd_run.cc) and `zeroplan validate` (cli/cmd_validate.cc).
#pragma once

#include <memory>
#include <string>

#include "cli/plan_file.h"
#include "costmodel/layout.h"
#include "executor/communicator.h"
#include "executor/tracking_allocator.h"
#include "models/json_file.h"

namespace zp {

// The rank's tracking allocators: what its accelerator holds (tagged host
// memory on the CPU backend, the GPU's on the CUDA one) and the host memory
// of offload. The Device must outlive it.
struct Memory {
  // The host side: the accelerator's own (pinned memory for a GPU).
  explicit Memory(Device& accelerator = host_device()) : device(accelerator), host(accelerator.host_side()) {}
  TrackingAllocator device, host;
};

// The device of --device NAME: nullptr for "cpu" (the host), the first GPU
// for "cuda"; an InputError naming the flag for anything else, or for
// "cuda" in a build without CUDA.
std::unique_ptr<Device> make_run_device(const std::string& name);

// Under mpirun with --device cuda: the world as an NCCL communicator (one
// GPU per process, its rank within the node) and that GPU, a collective
// call. check_gpu_world() first, on every rank: an InputError in a build
// without NCCL or on a node without a GPU.
struct GpuWorld {
  std::unique_ptr<Communicator> comm;
  std::unique_ptr<Device> gpu;
};
void check_gpu_world();
GpuWorld make_gpu_world();

// What `zeroplan run` was asked to do.
struct RunOptions {
  std::string plan_path, text, out_path;
  std::string save_dir, resume_dir;  // checkpoints: one file per rank, rank<r>.ckpt
  std::string device = "cpu";        // --device: cpu or cuda
  int steps = 10, emulate_rank = -1;
  bool quiet = false;  // no line per step
};

// What the CPU executor runs, checked before any rank starts: the layout as
// it runs it (zeroplan accounting, materialised attention, emulated
// overheads); a plan outside it is an InputError naming `path` and the reason.
Layout runnable_layout(const std::string& path, const PlanFile& p, bool on_gpu = false);

// Trains this rank's part of `l` (from runnable_layout) on `world` for
// o.steps steps; returns the rank's measurements (zeroplan.measured JSON,
// with "pipeline_stage") where it reports (the leader, the first rank of each
// pipeline stage, an emulated rank), null elsewhere.
Json run_rank(const PlanFile& plan, const Layout& l, Communicator& world, Memory& memory, bool leader, const RunOptions& o);

// Writes `content` to a temporary name and renames it into place.
void write_atomically(const std::string& path, const std::string& content);

}  // namespace zp
