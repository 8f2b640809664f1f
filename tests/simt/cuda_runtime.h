// Stands in for CUDA's runtime header where kernels/ and the executor's CUDA
// side are compiled for the host emulator (simt.h): device memory is host
// memory whose ranges are remembered (so cudaPointerGetAttributes and
// cudaMemGetInfo answer as a device would, against a notional 80 GiB or
// ZP_SIMT_DEVICE_BYTES),
// new device memory is NaN bytes (0xff, so a read before a write shows),
// copies with pinned host memory complete only at the waits a GPU promises
// them at (simt::AsyncCopies below; every other copy and memset is done when
// the call returns), an event remembers the host clock when recorded, and
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
#include <vector>

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

struct CUstream_st {
  bool blocking = true;  // cudaStreamCreate's: ordered with the legacy default stream both ways
};
struct CUevent_st {
  std::chrono::steady_clock::time_point at;
  CUstream_st* stream = nullptr;  // where it was last recorded
  uint64_t seq = 0;               // and when (simt::AsyncCopies's order)
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

// Allocations remembered by their ranges, for pointer queries.
struct Ranges {
  std::mutex mutex;
  std::map<const char*, size_t> blocks;  // start -> bytes
  bool holds(const void* p) {
    std::lock_guard<std::mutex> lock(mutex);
    const char* c = static_cast<const char*>(p);
    auto it = blocks.upper_bound(c);
    if (it == blocks.begin()) return false;
    --it;
    return c < it->first + it->second;
  }
};

// The "device" allocations, for pointer queries and the free-memory count.
// ZP_SIMT_DEVICE_BYTES makes the device smaller (a test of what runs out).
struct DeviceMemory : Ranges {
  static inline const size_t kTotalBytes = [] {
    const char* bytes = std::getenv("ZP_SIMT_DEVICE_BYTES");
    return bytes != nullptr ? static_cast<size_t>(std::strtoull(bytes, nullptr, 10)) : size_t{80} << 30;
  }();
  size_t used = 0;
  static DeviceMemory& get() {
    static DeviceMemory m;
    return m;
  }
};

// Pinned (cudaHostAlloc'd) host ranges: only copies to and from these are
// asynchronous (a copy with pageable memory is staged before the call
// returns, CUDA's "API synchronization behavior").
struct PinnedMemory : Ranges {
  static PinnedMemory& get() {
    static PinnedMemory m;
    return m;
  }
};

// Copies in flight between the device and pinned memory, so that what a GPU
// leaves undefined until a wait is wrong here until a wait:
// - to the host: the device's bytes are taken when the copy is queued (in
//   its stream's order) and reach the host only when a host wait covers the
//   copy (its stream's or its event's synchronize, or the device's), so a
//   host that reads before waiting reads what was there before;
// - to the device on a non-blocking stream (a copy stream): the bytes land
//   when a wait covers the copy, on the host or on another stream
//   (cudaStreamWaitEvent), so a kernel that was not ordered after the copy
//   reads the old bytes; on the default stream or a blocking one (ordered
//   with it), at once, in the kernels' order;
// - either way the host's side must not change before the wait (a GPU may
//   read or write it any time until then): a host buffer found changed when
//   its copy completes is reported and the process stops, like a barrier
//   nobody can open.
struct AsyncCopies {
  struct Copy {
    cudaStream_t stream;
    uint64_t seq;
    bool to_host;
    void* dst;
    const void* host;         // the pinned side
    std::vector<char> bytes;  // to the host: the device's bytes; to the device: the host's when queued
    bool landed = false;      // to the device: written (default stream at once, else at a wait)
  };
  std::mutex mutex;
  std::vector<Copy> pending;
  uint64_t next_seq = 1;
  static AsyncCopies& get() {
    static AsyncCopies c;
    return c;
  }
  // Completes the copies `covered` says a wait covers (the device's side
  // only unless `host` is true: a stream waiting on an event).
  template <class Covered>
  void complete(Covered covered, bool host) {
    std::lock_guard<std::mutex> lock(mutex);
    std::vector<Copy> kept;
    for (Copy& c : pending) {
      if (!covered(c)) {
        kept.push_back(std::move(c));
        continue;
      }
      if (!c.to_host && !c.landed) {
        std::memcpy(c.dst, c.bytes.data(), c.bytes.size());
        c.landed = true;
      }
      if (!host) {
        kept.push_back(std::move(c));
        continue;
      }
      if (c.to_host) {
        std::memcpy(c.dst, c.bytes.data(), c.bytes.size());
      } else if (std::memcmp(c.host, c.bytes.data(), c.bytes.size()) != 0) {
        std::fprintf(stderr, "simt: the pinned host source of an asynchronous copy to the device (%zu bytes) changed "
                             "before the copy was waited for\n", c.bytes.size());
        std::abort();
      }
    }
    pending.swap(kept);
  }
  // The legacy default stream (nullptr) waits for the blocking streams too.
  void complete_stream(cudaStream_t s, bool host) {
    complete([s](const Copy& c) { return c.stream == s || (s == nullptr && c.stream->blocking); }, host);
  }
  void complete_all() {
    complete([](const Copy&) { return true; }, true);
  }
  uint64_t mark() {
    std::lock_guard<std::mutex> lock(mutex);
    return next_seq++;
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
  simt::AsyncCopies::get().complete_all();  // cudaFree waits for the device
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
// As CUDA 11 and later: device, pinned host, or unregistered (pageable).
inline cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* a, const void* p) {
  *a = cudaPointerAttributes{};
  a->type = simt::DeviceMemory::get().holds(p)   ? cudaMemoryTypeDevice
            : simt::PinnedMemory::get().holds(p) ? cudaMemoryTypeHost
                                                 : cudaMemoryTypeUnregistered;
  return cudaSuccess;
}
inline cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned) {
  *p = std::malloc(bytes == 0 ? 1 : bytes);
  if (*p == nullptr) return cudaErrorMemoryAllocation;
  simt::PinnedMemory& m = simt::PinnedMemory::get();
  std::lock_guard<std::mutex> lock(m.mutex);
  m.blocks[static_cast<const char*>(*p)] = bytes;
  return cudaSuccess;
}
inline cudaError_t cudaFreeHost(void* p) {
  simt::AsyncCopies::get().complete_all();  // cudaFreeHost waits for the device
  simt::PinnedMemory& m = simt::PinnedMemory::get();
  {
    std::lock_guard<std::mutex> lock(m.mutex);
    m.blocks.erase(static_cast<const char*>(p));
  }
  std::free(p);
  return cudaSuccess;
}

// Synchronous copies and memsets run in the default stream's order.
inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  simt::AsyncCopies::get().complete_stream(nullptr, true);
  if (bytes > 0) std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind, cudaStream_t stream = nullptr) {
  simt::AsyncCopies& copies = simt::AsyncCopies::get();
  copies.complete_stream(stream, false);  // what the stream queued before lands first
  if (bytes == 0) return cudaSuccess;
  simt::DeviceMemory& device = simt::DeviceMemory::get();
  simt::PinnedMemory& pinned = simt::PinnedMemory::get();
  const bool to_host = device.holds(src) && pinned.holds(dst), to_device = device.holds(dst) && pinned.holds(src);
  if (!to_host && !to_device) {  // device to device, or pageable host memory: done when the call returns
    std::memcpy(dst, src, bytes);
    return cudaSuccess;
  }
  simt::AsyncCopies::Copy c{stream, copies.mark(), to_host, dst, to_host ? dst : src,
                            std::vector<char>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes)};
  if (to_device && (stream == nullptr || stream->blocking)) {  // in order with the default stream's kernels
    std::memcpy(dst, src, bytes);
    c.landed = true;
  }
  std::lock_guard<std::mutex> lock(copies.mutex);
  copies.pending.push_back(std::move(c));
  return cudaSuccess;
}
inline cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  simt::AsyncCopies::get().complete_stream(nullptr, true);
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t stream = nullptr) {
  simt::AsyncCopies::get().complete_stream(stream, false);
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  simt::AsyncCopies::get().complete_all();  // launches run to the end when launched
  return cudaSuccess;
}

inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  *s = new CUstream_st{(flags & cudaStreamNonBlocking) == 0};
  return cudaSuccess;
}
inline cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  simt::AsyncCopies::get().complete_stream(s, true);  // its work still completes
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  simt::AsyncCopies::get().complete_stream(s, true);
  return cudaSuccess;
}
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st{std::chrono::steady_clock::now()};
  return cudaSuccess;
}
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t stream = nullptr) {
  e->at = std::chrono::steady_clock::now();
  e->stream = stream;
  e->seq = simt::AsyncCopies::get().mark();
  return cudaSuccess;
}
namespace simt {
// The copies an event covers: its stream's, queued before it was recorded.
inline auto covered_by(cudaEvent_t e) {
  return [s = e->stream, seq = e->seq](const AsyncCopies::Copy& c) { return c.stream == s && c.seq < seq; };
}
}  // namespace simt
inline cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned) {
  simt::AsyncCopies::get().complete(simt::covered_by(e), false);
  return cudaSuccess;
}
inline cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  simt::AsyncCopies::get().complete(simt::covered_by(e), true);
  return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t from, cudaEvent_t to) {
  *ms = std::chrono::duration<float, std::milli>(to->at - from->at).count();
  return cudaSuccess;
}
