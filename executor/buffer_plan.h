// Allocating a rank's buffers from the cost model's rows: one table, two
// uses. Every GPU-resident tensor row of memory_rows_for_stage() becomes a
// tagged allocation of exactly its bytes; what the executor then allocates on
// top (workspaces, allocator rounding) is what validation measures. Host and
// NVMe rows are not allocated here (the offload engine owns them).
#pragma once

#include <vector>

#include "costmodel/memory_model.h"
#include "executor/tracking_allocator.h"

namespace zp {

struct PlannedBuffer {
  MemoryRow row;
  void* data = nullptr;
};

// Allocates the tensor rows (not the runtime overheads, which the runtime
// itself creates) of `stage` through `allocator`. The caller releases them.
std::vector<PlannedBuffer> allocate_stage_buffers(const MemoryInputs& in, uint32_t stage, TrackingAllocator& allocator);

}  // namespace zp
