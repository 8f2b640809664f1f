// CachingAllocator: device memory for the CUDA backend (issue 7), carved from
// segments that a SegmentSource hands out (cudaMalloc on a GPU; host memory
// in the tests) and cached when freed, so a training step's allocations reuse
// the last step's blocks instead of calling cudaMalloc, which synchronises the
// device. The policy is PyTorch's CUDACachingAllocator
// (c10/cuda/CUDACachingAllocator.cpp), whose peak memory is what PyTorch
// users measure and what zeroplan's fragmentation row will be fitted to:
//  - sizes round up to a multiple of 512 bytes (kMinBlockSize);
//  - requests up to 1 MiB (kSmallSize) come from a small pool of 2 MiB
//    segments (kSmallBuffer); larger ones from a large pool whose segments
//    are 20 MiB (kLargeBuffer) below 10 MiB (kMinLargeAlloc), else the
//    request rounded up to 2 MiB (kRoundLarge);
//  - the best fit (the smallest free block that holds the request, lowest
//    address among equals) is taken and split when the rest is at least
//    512 bytes (small pool) or more than 1 MiB (large pool);
//  - freed blocks merge with free neighbours of the same segment;
//  - when the source has no memory for a new segment, the wholly free
//    cached segments go back to it and the request is tried once more; then
//    std::bad_alloc.
// One stream, one thread: no per-stream pools, no events (the executor
// orders its work on one compute stream). What it counts: the bytes asked
// for under each cost-model component (the same ledger as
// TrackingAllocator, so runs compare with the cost model's rows the same
// way), the rounded blocks in use, and the segments reserved from the
// source with their peak; reserved minus asked is fragmentation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <set>
#include <unordered_map>
#include <vector>

#include "costmodel/memory_rows.h"
#include "executor/tag_ledger.h"

namespace zp {

// Where segments come from. allocate() returns nullptr when there is no
// memory for `bytes` (it must not throw for that).
class SegmentSource {
 public:
  virtual ~SegmentSource() = default;
  virtual void* allocate(uint64_t bytes) = 0;
  virtual void release(void* p, uint64_t bytes) = 0;
};

class CachingAllocator {
 public:
  static constexpr uint64_t kMinBlockSize = 512;
  static constexpr uint64_t kSmallSize = uint64_t{1} << 20;
  static constexpr uint64_t kSmallBuffer = uint64_t{2} << 20;
  static constexpr uint64_t kLargeBuffer = uint64_t{20} << 20;
  static constexpr uint64_t kMinLargeAlloc = uint64_t{10} << 20;
  static constexpr uint64_t kRoundLarge = uint64_t{2} << 20;

  explicit CachingAllocator(SegmentSource& source) : source_(source) {}
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;
  // Every segment goes back to the source, live blocks' included.
  ~CachingAllocator();

  // bytes == 0 gives nullptr. Throws std::bad_alloc when the source is out.
  void* allocate(uint64_t bytes, Component tag);
  void release(void* p);
  void retag(const void* p, Component tag);
  // Returns the wholly free cached segments to the source.
  void empty_cache();
  // From now on the peaks are those of what follows (PyTorch's
  // reset_peak_memory_stats): one run's figures, not an earlier one's.
  void reset_peaks() {
    peak_reserved_ = reserved_;
    peak_allocated_ = allocated_;
  }

  // What the callers asked for, per component (TrackingAllocator's meaning).
  const TagLedger& ledger() const { return ledger_; }
  uint64_t allocated_bytes() const { return allocated_; }  // rounded blocks in use
  uint64_t peak_allocated_bytes() const { return peak_allocated_; }
  uint64_t reserved_bytes() const { return reserved_; }  // segments held from the source
  uint64_t peak_reserved_bytes() const { return peak_reserved_; }
  size_t segments() const { return segments_.size(); }
  size_t live_allocations() const { return live_.size(); }
  uint64_t source_allocations() const { return source_allocations_; }  // cudaMalloc calls, in effect

  // The request sizes' rounding and the segment a request starts, as the policy above.
  static uint64_t round_size(uint64_t bytes);
  static uint64_t segment_size(uint64_t rounded);

 private:
  struct Block {
    char* ptr = nullptr;
    uint64_t size = 0;
    bool small = false;      // which pool it returns to
    bool allocated = false;
    uint64_t requested = 0;  // while allocated
    Component tag = Component::Workspace;
    Block* prev = nullptr;   // neighbours within the segment
    Block* next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      return a->size != b->size ? a->size < b->size : a->ptr < b->ptr;
    }
  };
  using Pool = std::set<Block*, BySizeThenAddress>;

  Pool& pool(bool small) { return small ? small_pool_ : large_pool_; }
  Block* find_free(bool small, uint64_t size);
  Block* new_segment(bool small, uint64_t size);
  void free_segment(Block* head);
  void merge_into(Block* into, Block* gone);

  SegmentSource& source_;
  Pool small_pool_, large_pool_;
  std::unordered_map<void*, Block*> live_;
  std::vector<Block*> segments_;  // each segment's first block
  TagLedger ledger_;
  uint64_t allocated_ = 0, peak_allocated_ = 0, reserved_ = 0, peak_reserved_ = 0, source_allocations_ = 0;
};

}  // namespace zp
