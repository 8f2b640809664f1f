// Knobs of the memory model that are not part of the layout: runtime
// overheads (measured), framework buffer sizes (documented defaults). A zero
// bucket or prefetch size means "the framework's default" and is resolved by
// resolve_options(). Sources for every default are in docs/memory-model.md.
#pragma once

#include <cstdint>

#include "costmodel/layout.h"

namespace zp {

struct RuntimeOverheads {
  // Measured on the reference H200 with cudaMemGetInfo deltas
  // (shared/reference/h200.md, 2026-11-29): CUDA context 526 MiB, cuBLAS
  // handle with lazy module loading 68 MiB, NCCL communicators 388-580 MiB
  // each (the first one costs the most).
  uint64_t cuda_context_bytes = 526ull << 20;
  uint64_t cublas_workspace_bytes = 68ull << 20;
  uint64_t nccl_first_communicator_bytes = 580ull << 20;
  uint64_t nccl_communicator_bytes = 388ull << 20;
  // Allocator fragmentation, as a fraction of the tensor bytes. Not yet
  // measured (the validate issue measures it); 0 keeps it out of the sum.
  double fragmentation_fraction = 0.0;
};

// zeroplan's executor: ZeRO-1's reduce-scatter and all-gather bucket, in
// elements (executor/data_parallel.h, TrainerMemory::reduce_bucket_elems).
constexpr uint64_t kZeroplanBucketElems = uint64_t{1} << 24;
// ... the cuBLASLt workspace its CUDA backend allocates once per rank
// (executor/cuda_backend.h; 32 MiB, cuBLAS's recommended workspace on
// Hopper, docs.nvidia.com/cuda/cublas "cublasSetWorkspace"), tracked as the
// backend's scratch; the cuBLAS handle itself is the cublas_workspace
// overhead row, measured ...
constexpr uint64_t kZeroplanCudaMatmulWorkspaceBytes = uint64_t{32} << 20;
// ... and the host staging slots its offloaded ZeRO-2/3 gradients pass
// through (executor/host_gradient_drain.h).
constexpr int kZeroplanDrainSlots = 2;

struct MemoryOptions {
  RuntimeOverheads overheads;
  uint64_t reduce_bucket_elems = 0;     // gradient bucket size; 0 = framework default
  bool overlap_comm = false;            // double-buffered buckets (DeepSpeed overlap_comm)
  bool overlap_comm_set = false;        // false: use the framework's default
  uint64_t prefetch_elems = 0;          // ZeRO-3 prefetch (DeepSpeed stage3_prefetch_bucket_size)
  uint64_t max_live_elems = 0;          // ZeRO-3 stage3_max_live_parameters
  uint64_t nvme_param_buffer_elems = 0; // offload_param buffer_size x buffer_count
  uint64_t optimizer_subgroup_elems = 0;// DeepSpeed sub_group_size (optimizer swap unit)
};

// Fills the zero fields with the defaults of `layout.framework`.
MemoryOptions resolve_options(const MemoryOptions& in, const Layout& layout);

}  // namespace zp
