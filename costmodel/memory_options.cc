#include "costmodel/memory_options.h"

namespace zp {

MemoryOptions resolve_options(const MemoryOptions& in, const Layout& layout) {
  MemoryOptions o = in;
  const bool ds = layout.framework == Framework::DeepSpeed;
  if (o.reduce_bucket_elems == 0) {
    // DeepSpeed: reduce_bucket_size = 5e8 elements (deepspeed/runtime/zero/config.py).
    // zeroplan's executor: 2^24 elements per bucket. Megatron's buckets are
    // views into its contiguous main-grad buffer and add nothing (0 rows).
    o.reduce_bucket_elems = ds ? 500000000ull : kZeroplanBucketElems;
  }
  if (!o.overlap_comm_set) {
    // DeepSpeed's overlap_comm defaults to true for ZeRO-3 and false otherwise
    // (deepspeed/runtime/zero/config.py). zeroplan's rows do not read it: its
    // executor's buffers are its own (memory_model.cc, emit_executor_buffers).
    o.overlap_comm = ds ? layout.zero_stage == 3 : true;
  }
  if (o.prefetch_elems == 0) o.prefetch_elems = 50000000ull;   // stage3_prefetch_bucket_size 5e7
  if (o.max_live_elems == 0) o.max_live_elems = 1000000000ull; // stage3_max_live_parameters 1e9
  if (o.nvme_param_buffer_elems == 0) o.nvme_param_buffer_elems = 5ull * 100000000ull;  // 5 x 1e8
  if (o.optimizer_subgroup_elems == 0) o.optimizer_subgroup_elems = 1000000000ull;      // sub_group_size 1e9
  return o;
}

}  // namespace zp
