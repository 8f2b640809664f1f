// CudaDevice: the GPU as a Device (executor/device.h). Its blocks come from
// the caching allocator (executor/caching_allocator.h, PyTorch's policy)
// over cudaMalloc'd segments, so a step's buffers reuse the last step's
// memory without synchronising cudaMalloc calls and the reserved peak is
// what PyTorch users would measure. Zeroing and copies are queued on the
// legacy default stream, where every kernel of the CUDA backend runs, so
// they are ordered with the kernels without explicit synchronisation; a
// copy that reaches pageable host memory returns once the host side is done
// (cudaMemcpyAsync's rules). Its backends are CudaBackend's. Built where
// nvcc is (target zp_executor_cuda). Buffers from it must go before it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "executor/caching_allocator.h"
#include "executor/device.h"

namespace zp {

// Pinned (page-locked) host memory, cudaHostAlloc'd: a GPU's copies to and
// from it run at full PCIe speed without a staging copy (ZeRO-Offload keeps
// its host buffers pinned). Host-accessible; zeroed and copied on the host.
class PinnedHostDevice final : public Device {
 public:
  std::string name() const override { return "pinned host memory"; }
  void* allocate(uint64_t bytes) override;
  void release(void* p) override;
  void zero(void* p, uint64_t bytes) override;
  void fill_bytes(void* p, unsigned char byte, uint64_t bytes) override;
  void copy(void* dst, const void* src, uint64_t bytes) override;
};

class CudaDevice final : public Device {
 public:
  // Selects GPU `ordinal` for this process (cudaSetDevice).
  explicit CudaDevice(int ordinal = 0);
  ~CudaDevice() override;
  std::string name() const override { return name_; }
  void* allocate(uint64_t bytes) override;
  void release(void* p) override;
  void zero(void* p, uint64_t bytes) override;
  void fill_bytes(void* p, unsigned char byte, uint64_t bytes) override;
  void copy(void* dst, const void* src, uint64_t bytes) override;
  void synchronize() override;
  // On the compute stream (where the work that wrote `src` and the work that
  // writes it next run), each copy followed by an event of its own.
  uint64_t copy_to_host_async(void* dst, const void* src, uint64_t bytes) override;
  void wait_copy(uint64_t ticket) override;
  void use_from_this_thread() override;
  bool host_accessible() const override { return false; }
  bool is_gpu() const override { return true; }
  Device& host_side() override { return pinned_; }
  // CUDA events on the compute stream (executor/timeline.h).
  std::unique_ptr<Timeline> make_timeline() override;
  std::unique_ptr<Backend<float>> make_backend(TrackingAllocator* tracker, float* type) override;
  std::unique_ptr<Backend<bf16>> make_backend(TrackingAllocator* tracker, bf16* type) override;
  // Reserved (segments) and allocated (rounded blocks) bytes and their peaks.
  const CachingAllocator& caching() const { return caching_; }
  // Built for tests/simt's host emulator (ZP_SIMT_HOST), where no CUDA
  // context or library holds device memory of its own.
  static constexpr bool host_emulator() {
#ifdef ZP_SIMT_HOST
    return true;
#else
    return false;
#endif
  }
  // Before a measured run on a device an earlier run used: its cached
  // segments go back to CUDA and the allocator's peaks start again.
  void start_measurement() {
    caching_.empty_cache();
    caching_.reset_peaks();
  }

 private:
  class Segments final : public SegmentSource {
   public:
    void* allocate(uint64_t bytes) override;
    void release(void* p, uint64_t bytes) override;
  };
  std::string name_;
  int ordinal_ = 0;
  std::vector<void*> copy_events_;  // cudaEvent_t, kCopiesInFlight of them, reused round robin
  uint64_t next_copy_ = 0;
  PinnedHostDevice pinned_;
  Segments segments_;
  CachingAllocator caching_{segments_};
};

}  // namespace zp
