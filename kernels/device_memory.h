// Device memory from the CUDA runtime for the caching allocator
// (executor/caching_allocator.h) and the device's own view of its memory
// (cudaMemGetInfo), which `validate` reads before and after a run so the
// context, library and NCCL memory is measured, not guessed.
#pragma once

#include <cstdint>

namespace zp::cuda {

// cudaMalloc; nullptr when the device is out of memory (the error is
// cleared), std::runtime_error for any other failure.
void* device_malloc(uint64_t bytes);
void device_free(void* p);
// Whether p is host memory (pinned or pageable), not a GPU's.
bool host_pointer(const void* p);
// Whether this process sees a CUDA device.
bool device_present();

struct DeviceMemoryInfo {
  uint64_t free_bytes = 0, total_bytes = 0;
  uint64_t used_bytes() const { return total_bytes - free_bytes; }
};
DeviceMemoryInfo device_memory_info();

}  // namespace zp::cuda
