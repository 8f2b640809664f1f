#include "executor/cuda_device.h"

#include <cuda_runtime.h>

#include <cstring>
#include <new>
#include <stdexcept>
#include <string>

#include "executor/cuda_backend.h"
#include "executor/timeline.h"
#include "kernels/device_memory.h"
#include "kernels/streams_cuda.h"

namespace zp {
namespace {

void check(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(call) + ": " + cudaGetErrorString(e));
}

}  // namespace

CudaDevice::CudaDevice(int ordinal) : ordinal_(ordinal) {
  check(cudaSetDevice(ordinal), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, ordinal), "cudaGetDeviceProperties");
  name_ = "cuda:" + std::to_string(ordinal) + " (" + prop.name + ")";
}

CudaDevice::~CudaDevice() {
  cudaDeviceSynchronize();
  for (void* e : copy_events_) cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

uint64_t CudaDevice::copy_to_host_async(void* dst, const void* src, uint64_t bytes) {
  if (copy_events_.empty()) {
    for (uint64_t i = 0; i < kCopiesInFlight; ++i) {
      cudaEvent_t e = nullptr;
      check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
      copy_events_.push_back(e);
    }
  }
  const uint64_t ticket = next_copy_++;
  if (bytes) check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, nullptr), "cudaMemcpyAsync (to host)");
  check(cudaEventRecord(static_cast<cudaEvent_t>(copy_events_[ticket % kCopiesInFlight]), nullptr), "cudaEventRecord");
  return ticket;
}

void CudaDevice::use_from_this_thread() { check(cudaSetDevice(ordinal_), "cudaSetDevice (worker thread)"); }

void CudaDevice::wait_copy(uint64_t ticket) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(copy_events_.at(ticket % kCopiesInFlight))), "cudaEventSynchronize");
}

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

void CudaDevice::zero(void* p, uint64_t bytes) { fill_bytes(p, 0, bytes); }

void CudaDevice::fill_bytes(void* p, unsigned char byte, uint64_t bytes) {
  if (bytes) check(cudaMemsetAsync(p, byte, bytes, nullptr), "cudaMemsetAsync");
}

// Device to device, the copy is queued like a kernel. With a host side it
// returns once the copy is done, as the Device contract says (the host may
// then read or reuse the host buffer): a copy with pinned memory would
// otherwise still be in flight (one with pageable memory is staged
// synchronously by the runtime anyway).
void CudaDevice::copy(void* dst, const void* src, uint64_t bytes) {
  if (!bytes) return;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, nullptr), "cudaMemcpyAsync");
  if (cuda::host_pointer(dst) || cuda::host_pointer(src)) check(cudaStreamSynchronize(nullptr), "cudaStreamSynchronize");
}

void* PinnedHostDevice::allocate(uint64_t bytes) {
  void* p = nullptr;
  if (cudaHostAlloc(&p, bytes, cudaHostAllocDefault) != cudaSuccess) {
    cudaGetLastError();
    return nullptr;
  }
  return p;
}

void PinnedHostDevice::release(void* p) {
  if (p) cudaFreeHost(p);
}

void PinnedHostDevice::zero(void* p, uint64_t bytes) { fill_bytes(p, 0, bytes); }

void PinnedHostDevice::fill_bytes(void* p, unsigned char byte, uint64_t bytes) {
  if (bytes) std::memset(p, byte, bytes);
}

void PinnedHostDevice::copy(void* dst, const void* src, uint64_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void CudaDevice::synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

namespace {

// The compute stream's events (the legacy default stream, where the backend's
// kernels and this device's copies run).
class CudaEventTimeline final : public Timeline {
 public:
  size_t mark() override { return events_.mark(); }
  double seconds(size_t from, size_t to) override { return events_.seconds(from, to); }
  void clear() override { events_.clear(); }

 private:
  cuda::EventTimeline events_{nullptr};
};

}  // namespace

std::unique_ptr<Timeline> CudaDevice::make_timeline() { return std::make_unique<CudaEventTimeline>(); }

std::unique_ptr<Backend<float>> CudaDevice::make_backend(TrackingAllocator* tracker, float*) {
  return std::make_unique<CudaBackend<float>>(*this, tracker);
}
std::unique_ptr<Backend<bf16>> CudaDevice::make_backend(TrackingAllocator* tracker, bf16*) {
  return std::make_unique<CudaBackend<bf16>>(*this, tracker);
}

}  // namespace zp
