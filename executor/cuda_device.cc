#include "executor/cuda_device.h"

#include <cuda_runtime.h>

#include <new>
#include <stdexcept>
#include <string>

#include "executor/cuda_backend.h"
#include "kernels/device_memory.h"

namespace zp {
namespace {

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(e));
}

}  // namespace

CudaDevice::CudaDevice(int ordinal) {
  check(cudaSetDevice(ordinal), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
  name_ = "cuda:" + std::to_string(ordinal) + " (" + prop.name + ")";
}

CudaDevice::~CudaDevice() { cudaDeviceSynchronize(); }

void* CudaDevice::Segments::allocate(uint64_t bytes) { return cuda::device_malloc(bytes); }
void CudaDevice::Segments::release(void* p, uint64_t) { cuda::device_free(p); }

void* CudaDevice::allocate(uint64_t bytes) {
  // The caching allocator's own ledger is not read: the TrackingAllocator
  // above keeps the tags.
  try {
    return caching_.allocate(bytes, Component::Workspace);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

void CudaDevice::release(void* p) { caching_.release(p); }

void CudaDevice::zero(void* p, uint64_t bytes) {
  if (bytes) check(cudaMemsetAsync(p, 0, bytes, nullptr), "cudaMemsetAsync");
}

void CudaDevice::copy(void* dst, const void* src, uint64_t bytes) {
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, nullptr), "cudaMemcpyAsync");
}

void CudaDevice::synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

std::unique_ptr<Backend<float>> CudaDevice::make_backend(TrackingAllocator* tracker, float*) {
  return std::make_unique<CudaBackend<float>>(*this, tracker);
}
std::unique_ptr<Backend<bf16>> CudaDevice::make_backend(TrackingAllocator* tracker, bf16*) {
  return std::make_unique<CudaBackend<bf16>>(*this, tracker);
}

}  // namespace zp
