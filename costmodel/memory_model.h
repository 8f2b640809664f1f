// The memory cost model: bytes per GPU, per node's host memory and per node's
// NVMe for one layout, component by component, at the most loaded rank.
//
// evaluate_memory() is the planner's hot path: no heap allocation, a handful
// of pipeline stages evaluated (the first, the second, the first with an extra
// layer, the last: every other stage holds no more than one of these), the
// maximum taken. memory_rows_for_stage() gives the full table of one stage for
// `explain`, the executor and tests. The layout must have passed check_layout().
#pragma once

#include <cstdint>

#include "costmodel/cluster.h"
#include "costmodel/layout.h"
#include "costmodel/memory_options.h"
#include "costmodel/memory_rows.h"
#include "costmodel/model_shape.h"

namespace zp {

struct MemoryInputs {
  const ModelShape& model;
  const Layout& layout;
  const ClusterShape& cluster;
  const MemoryOptions& options;  // resolved (resolve_options)
};

struct MemoryResult {
  MemoryTotals rank;              // the most loaded rank
  uint32_t stage = 0;             // its pipeline stage
  uint64_t gpu_bytes = 0;         // GPU total of that rank
  uint64_t host_bytes_per_node = 0;
  uint64_t nvme_bytes_per_node = 0;
  bool fits_gpu = false, fits_host = false, fits_nvme = false;
  bool fits() const { return fits_gpu && fits_host && fits_nvme; }
};

MemoryResult evaluate_memory(const MemoryInputs& in);

// Every row of one stage's rank.
void memory_rows_for_stage(const MemoryInputs& in, uint32_t stage, RowsSink& sink);

}  // namespace zp
