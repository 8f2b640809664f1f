#include "executor/buffer_plan.h"

namespace zp {

std::vector<PlannedBuffer> allocate_stage_buffers(const MemoryInputs& in, uint32_t stage, TrackingAllocator& allocator) {
  RowsSink rows;
  memory_rows_for_stage(in, stage, rows);
  std::vector<PlannedBuffer> out;
  for (int i = 0; i < rows.size(); ++i) {
    const MemoryRow& r = rows[i];
    if (r.residence != Residence::Gpu || is_runtime_overhead(r.component)) continue;
    out.push_back({r, allocator.allocate(r.bytes, r.component)});
  }
  return out;
}

}  // namespace zp
