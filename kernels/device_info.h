// What the local CUDA devices are, read from the driver (cudaGetDeviceProperties
// and cudaMemGetInfo), so a user can check the catalog entry of the GPU they
// have. Built only with CUDA. Never throws: no device is a normal answer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace zp {

struct LocalDevice {
  std::string name;
  int sm_major = 0, sm_minor = 0, multiprocessors = 0;
  uint64_t total_bytes = 0, free_bytes = 0;
};

// Empty when there is no usable device; `error` then says why.
std::vector<LocalDevice> query_local_devices(std::string& error);

}  // namespace zp
