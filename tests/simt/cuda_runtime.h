// Stands in for CUDA's runtime header where kernels/ and the executor's CUDA
// side are compiled for the host emulator (simt.h): device memory is host
// memory whose ranges are remembered (so cudaPointerGetAttributes and
// cudaMemGetInfo answer as a device would, against a notional 80 GiB or
// ZP_SIMT_DEVICE_BYTES),
// new device memory is NaN bytes (0xff, so a read before a write shows),
// copies and memsets are synchronous whatever their stream, streams and
// events are tokens (an event remembers the host clock when recorded), and
// the device answers as an sm_90 part with H100/H200's 227 KiB of opt-in
// shared memory per block. Every call succeeds unless memory runs out or a
// launch or attribute asks for more than the device has (simt.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "simt.h"

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = simt::kInvalidValue,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = simt::kInvalidConfiguration
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost,
  cudaMemcpyHostToDevice,
  cudaMemcpyDeviceToHost,
  cudaMemcpyDeviceToDevice,
  cudaMemcpyDefault
};
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor, cudaDevAttrMaxSharedMemoryPerBlockOptin };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaMemoryType { cudaMemoryTypeUnregistered, cudaMemoryTypeHost, cudaMemoryTypeDevice, cudaMemoryTypeManaged };
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
constexpr unsigned cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2, cudaHostAllocDefault = 0;

struct CUstream_st {};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
};
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

struct cudaPointerAttributes {
  cudaMemoryType type = cudaMemoryTypeUnregistered;
  int device = 0;
  void* devicePointer = nullptr;
  void* hostPointer = nullptr;
};
struct cudaDeviceProp {
  char name[256] = "simt host emulator";
  int major = 9, minor = 0, multiProcessorCount = 1;
};

namespace simt {

// The "device" allocations, for pointer queries and the free-memory count.
// ZP_SIMT_DEVICE_BYTES makes the device smaller (a test of what runs out).
struct DeviceMemory {
  static inline const size_t kTotalBytes = [] {
    const char* bytes = std::getenv("ZP_SIMT_DEVICE_BYTES");
    return bytes != nullptr ? static_cast<size_t>(std::strtoull(bytes, nullptr, 10)) : size_t{80} << 30;
  }();
  std::mutex mutex;
  std::map<const char*, size_t> blocks;  // start -> bytes
  size_t used = 0;
  static DeviceMemory& get() {
    static DeviceMemory m;
    return m;
  }
  bool holds(const void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    const char* c = static_cast<const char*>(p);
    auto it = blocks.upper_bound(c);
    if (it == blocks.begin()) return false;
    --it;
    return c < it->first + it->second;
  }
};

}  // namespace simt

inline cudaError_t cudaGetLastError() {
  const int e = simt::last_launch_error;
  simt::last_launch_error = 0;
  return static_cast<cudaError_t>(e);
}
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "invalid argument";
  }
}
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  *p = cudaDeviceProp{};
  return d == 0 ? cudaSuccess : cudaErrorInvalidValue;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int) {
  *value = attr == cudaDevAttrComputeCapabilityMajor ? 9 : static_cast<int>(simt::kOptinSharedBytes);
  return cudaSuccess;
}
template <class Kernel>
cudaError_t cudaFuncSetAttribute(Kernel kernel, cudaFuncAttribute, int value) {
  if (value < 0 || static_cast<size_t>(value) > simt::kOptinSharedBytes) return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(simt::shared_optins_mutex());
  simt::shared_optins()[reinterpret_cast<const void*>(kernel)] = static_cast<size_t>(value);
  return cudaSuccess;
}

template <class T>
cudaError_t cudaMalloc(T** p, size_t bytes) {
  simt::DeviceMemory& m = simt::DeviceMemory::get();
  std::lock_guard<std::mutex> lock(m.mutex);
  if (m.used + bytes > simt::DeviceMemory::kTotalBytes) return cudaErrorMemoryAllocation;
  void* q = std::malloc(bytes == 0 ? 1 : bytes);
  if (q == nullptr) return cudaErrorMemoryAllocation;
  // cudaMalloc's memory holds whatever was there; fresh host pages are
  // zeros, which would hide a kernel that reads before it writes (or adds
  // into a buffer nobody cleared). All ones bytes are a NaN in fp32 and bf16.
  std::memset(q, 0xff, bytes);
  m.blocks[static_cast<const char*>(q)] = bytes;
  m.used += bytes;
  *p = static_cast<T*>(q);
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  if (p == nullptr) return cudaSuccess;
  simt::DeviceMemory& m = simt::DeviceMemory::get();
  std::lock_guard<std::mutex> lock(m.mutex);
  auto it = m.blocks.find(static_cast<const char*>(p));
  if (it == m.blocks.end()) return cudaErrorInvalidValue;
  m.used -= it->second;
  m.blocks.erase(it);
  std::free(p);
  return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  simt::DeviceMemory& m = simt::DeviceMemory::get();
  std::lock_guard<std::mutex> lock(m.mutex);
  *total_bytes = simt::DeviceMemory::kTotalBytes;
  *free_bytes = simt::DeviceMemory::kTotalBytes - m.used;
  return cudaSuccess;
}
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  *a = cudaPointerAttributes{};
  a->type = simt::DeviceMemory::get().holds(p) ? cudaMemoryTypeDevice : cudaMemoryTypeHost;
  return cudaSuccess;
}
inline cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::malloc(bytes == 0 ? 1 : bytes);
  return *p != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, kind);
}
inline cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  return cudaMemset(p, value, bytes);
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }  // launches and copies run to the end

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{std::chrono::steady_clock::now()};
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
  e->at = std::chrono::steady_clock::now();
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t from, cudaEvent_t to) {
  *ms = std::chrono::duration<float, std::milli>(to->at - from->at).count();
  return cudaSuccess;
}
