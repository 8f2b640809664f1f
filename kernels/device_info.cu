#include "kernels/device_info.h"

#include <cuda_runtime.h>

namespace zp {

std::vector<LocalDevice> query_local_devices(std::string& error) {
  std::vector<LocalDevice> out;
  int count = 0;
  cudaError_t st = cudaGetDeviceCount(&count);
  if (st != cudaSuccess) {
    error = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(st);
    return out;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if ((st = cudaGetDeviceProperties(&p, i)) != cudaSuccess || (st = cudaSetDevice(i)) != cudaSuccess) {
      error = std::string("device ") + std::to_string(i) + ": " + cudaGetErrorString(st);
      return {};
    }
    size_t free_b = 0, total_b = 0;
    if ((st = cudaMemGetInfo(&free_b, &total_b)) != cudaSuccess) {
      error = std::string("cudaMemGetInfo: ") + cudaGetErrorString(st);
      return {};
    }
    out.push_back({p.name, p.major, p.minor, p.multiProcessorCount, total_b, free_b});
  }
  return out;
}

}  // namespace zp
