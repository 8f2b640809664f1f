#include "kernels/device_memory.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace zp::cuda {

void* device_malloc(uint64_t bytes) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // clear it: the caller frees its cache and retries
    return nullptr;
  }
  if (e != cudaSuccess) throw std::runtime_error(std::string("cudaMalloc: ") + cudaGetErrorString(e));
  return p;
}

void device_free(void* p) {
  const cudaError_t e = cudaFree(p);
  if (e != cudaSuccess) throw std::runtime_error(std::string("cudaFree: ") + cudaGetErrorString(e));
}

bool host_pointer(const void* p) {
  cudaPointerAttributes where{};
  if (cudaPointerGetAttributes(&where, p) != cudaSuccess) {
    cudaGetLastError();  // an unregistered host pointer on old runtimes leaves an error behind
    return true;
  }
  return where.type != cudaMemoryTypeDevice && where.type != cudaMemoryTypeManaged;
}

bool device_present() {
  int n = 0;
  const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
  cudaGetLastError();
  return ok;
}

DeviceMemoryInfo device_memory_info() {
  size_t free_b = 0, total_b = 0;
  const cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
  if (e != cudaSuccess) throw std::runtime_error(std::string("cudaMemGetInfo: ") + cudaGetErrorString(e));
  return {free_b, total_b};
}

}  // namespace zp::cuda
