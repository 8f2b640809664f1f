#include "cli/host_memory.h"

#include <fstream>

#include "cli/format.h"
#include "costmodel/cluster.h"
#include "costmodel/memory_model.h"
#include "costmodel/model_shape.h"
#include "models/input_error.h"
#include "models/param_count.h"

namespace zp {

uint64_t available_host_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  uint64_t value = 0;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") return unit == "kB" ? value * 1024 : 0;
  }
  return 0;
}

HostNeed host_need(const PlanFile& p, const Layout& run, bool on_gpu) {
  HostNeed need;
  const uint64_t element_bytes = run.precision == Precision::Fp32 ? 4 : 2;
  need.init_bytes = count_params(p.model).total * element_bytes;
  const ModelShape shape = make_shape(p.model);
  ClusterShape any;  // capacity does not matter: only the rows are read
  const MemoryResult m = evaluate_memory({shape, run, any, resolve_options({}, run)});
  need.buffer_bytes = m.rank.total(Residence::Host);
  // The rank's whole part of the model (its tensor and pipeline share,
  // before any ZeRO partition): the weights row of the same layout at ZeRO-0.
  Layout whole = run;
  whole.zero_stage = 0;
  whole.offload_optimizer = whole.offload_param = Offload::None;
  const uint64_t part = evaluate_memory({shape, whole, any, resolve_options({}, whole)}).rank.at(Residence::Gpu, Component::Weights);
  need.build_bytes = part * (on_gpu ? 1 : 3);  // the host copy; on the CPU backend also its parameters and gradients
  if (!on_gpu) {
    // The tensor rows; the runtime overheads after them are a GPU's.
    for (int c = 0; c < static_cast<int>(Component::CudaContext); ++c) {
      need.buffer_bytes += m.rank.at(Residence::Gpu, static_cast<Component>(c));
    }
  }
  return need;
}

void check_host_memory(const std::string& path, const PlanFile& p, const Layout& run, bool on_gpu, uint64_t processes,
                       uint64_t available) {
  if (available == 0) return;
  const HostNeed need = host_need(p, run, on_gpu);
  // In doubles: processes x need may pass 64 bits.
  const double total = static_cast<double>(need.total()) * static_cast<double>(processes);
  if (total <= static_cast<double>(available)) return;
  throw InputError(path + ": the run needs about " + fixed(total / 1073741824.0, 1) + " GiB of host memory (" +
                   std::to_string(processes) + " process" + (processes == 1 ? "" : "es") + " x (" +
                   gib(need.init_bytes, 1) + " of initial model values + " +
                   (need.build_bytes > need.buffer_bytes ? gib(need.build_bytes, 1) + " to build the model"
                                                         : gib(need.buffer_bytes, 1) + " of buffers") +
                   ")); this machine has " + gib(available, 1) + " available");
}

}  // namespace zp
