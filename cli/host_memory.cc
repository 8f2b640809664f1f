#include "cli/host_memory.h"

#include <fstream>
#include <sstream>

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
  const double total = static_cast<double>(need.total()) * static_cast<double>(processes);
  if (total <= static_cast<double>(available)) return;
  auto gib = [](double bytes) {
    std::ostringstream s;
    s.precision(1);
    s << std::fixed << bytes / (1024.0 * 1024.0 * 1024.0) << " GiB";
    return s.str();
  };
  throw InputError(path + ": the run needs about " + gib(total) + " of host memory (" + std::to_string(processes) +
                   " process" + (processes == 1 ? "" : "es") + " x (" + gib(static_cast<double>(need.init_bytes)) +
                   " of initial model values + " + gib(static_cast<double>(need.buffer_bytes)) +
                   " of buffers)); this machine has " + gib(static_cast<double>(available)) + " available");
}

}  // namespace zp
