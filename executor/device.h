// Device: where a rank's buffers live and how their bytes are zeroed and
// copied. The host (the CPU backend's memory, aligned host allocations and
// the standard memset/memcpy) is one; the CUDA device (executor/cuda_device.h,
// built where nvcc is) is the other: its blocks come from the caching
// allocator and its zeroing and copies are queued on the compute stream.
// A TrackingAllocator takes its bytes from one Device, so the models'
// buffers (executor/tagged_buffer.h) are zeroed and copied through it
// without knowing where they are.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "executor/scalar.h"

namespace zp {

template <class T>
class Backend;
class TrackingAllocator;
class Timeline;

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  // nullptr when the device has no memory for `bytes` (bytes > 0).
  virtual void* allocate(uint64_t bytes) = 0;
  virtual void release(void* p) = 0;
  virtual void zero(void* p, uint64_t bytes) = 0;
  // Every byte set to `byte` (Buffer::allocate's poison, tagged_buffer.h).
  virtual void fill_bytes(void* p, unsigned char byte, uint64_t bytes) = 0;
  // Either side may be host memory or this device's.
  virtual void copy(void* dst, const void* src, uint64_t bytes) = 0;
  // Returns once the work queued so far has finished: the host may then
  // read what it wrote (a no-op on the host).
  virtual void synchronize() {}
  // Queues a copy of `bytes` from this device's `src` to host memory `dst`
  // after the work queued so far and returns without waiting: a ticket that
  // wait_copy() (from any thread) waits for. Work queued afterwards that
  // writes `src` runs after the copy. At most kCopiesInFlight at once. The
  // host copies at once.
  static constexpr uint64_t kCopiesInFlight = 64;
  virtual uint64_t copy_to_host_async(void* dst, const void* src, uint64_t bytes) {
    copy(dst, src, bytes);
    return 0;
  }
  virtual void wait_copy(uint64_t /*ticket*/) {}
  // Makes this device current for the calling thread (a worker thread that
  // waits for its copies; a GPU's runtime starts new threads on device 0).
  virtual void use_from_this_thread() {}
  // Whether the host may read and write its memory directly.
  virtual bool host_accessible() const { return true; }
  // Where this device's host-resident buffers (offloaded optimizer states,
  // parameters, staging) live: the host; a GPU's are pinned, so its copies
  // to and from them go at full PCIe speed (executor/cuda_device.h).
  virtual Device& host_side() { return *this; }
  virtual bool is_gpu() const { return false; }
  // Marks on this device's timeline for phase times (executor/timeline.h):
  // the host's clock unless a device overrides it (a GPU's events).
  virtual std::unique_ptr<Timeline> make_timeline();
  // The backend whose kernels run on this device, its workspace from
  // `tracker` (executor/backend.h's make_backend picks the overload); the
  // host's CpuBackend unless a device overrides them.
  virtual std::unique_ptr<Backend<float>> make_backend(TrackingAllocator* tracker, float* type);
  virtual std::unique_ptr<Backend<bf16>> make_backend(TrackingAllocator* tracker, bf16* type);
};

// The host: 64-byte aligned blocks, memset, memcpy.
Device& host_device();

}  // namespace zp
