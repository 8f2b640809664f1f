// The caching allocator behind device memory (executor/caching_allocator.h),
// on host segments: PyTorch's rounding and segment sizes, reuse of freed
// blocks without new segments, splitting and merging, the ledger per
// component, the out-of-memory retry after emptying the cache, and a random
// sequence of allocations checked against the invariants (no overlap, every
// byte accounted for, everything returned).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <new>
#include <random>
#include <vector>

#include "executor/caching_allocator.h"

using namespace zp;

namespace {

constexpr uint64_t MiB = uint64_t{1} << 20;

// Host memory standing in for the device, with a capacity.
class HostSegments : public SegmentSource {
 public:
  explicit HostSegments(uint64_t capacity = ~uint64_t{0}) : capacity_(capacity) {}
  ~HostSegments() override { CHECK(outstanding_.empty()); }
  void* allocate(uint64_t bytes) override {
    if (held_ + bytes > capacity_) return nullptr;
    void* p = std::malloc(bytes);
    if (!p) return nullptr;
    outstanding_[p] = bytes;
    held_ += bytes;
    return p;
  }
  void release(void* p, uint64_t bytes) override {
    const auto it = outstanding_.find(p);
    REQUIRE(it != outstanding_.end());
    CHECK(it->second == bytes);  // a segment goes back whole
    held_ -= bytes;
    outstanding_.erase(it);
    std::free(p);
  }
  uint64_t held() const { return held_; }

 private:
  uint64_t capacity_, held_ = 0;
  std::map<void*, uint64_t> outstanding_;
};

}  // namespace

TEST_CASE("caching allocator: PyTorch's rounding and segment sizes") {
  CHECK(CachingAllocator::round_size(1) == 512);
  CHECK(CachingAllocator::round_size(512) == 512);
  CHECK(CachingAllocator::round_size(513) == 1024);
  CHECK(CachingAllocator::segment_size(512) == 2 * MiB);
  CHECK(CachingAllocator::segment_size(MiB) == 2 * MiB);
  CHECK(CachingAllocator::segment_size(MiB + 512) == 20 * MiB);
  CHECK(CachingAllocator::segment_size(10 * MiB) == 10 * MiB);
  CHECK(CachingAllocator::segment_size(10 * MiB + 512) == 12 * MiB);
}

TEST_CASE("caching allocator: freed blocks are reused, small ones packed into one segment") {
  HostSegments source;
  CachingAllocator a(source);
  void* p = a.allocate(1000, Component::Activations);
  a.release(p);
  CHECK(a.allocate(900, Component::Activations) == p);  // best fit: the cached block, no new segment
  CHECK(a.source_allocations() == 1);
  std::vector<char*> blocks;
  for (int i = 0; i < 100; ++i) blocks.push_back(static_cast<char*>(a.allocate(10240, Component::Workspace)));
  CHECK(a.segments() == 1);  // 100 x 10 KiB + 1 KiB fit one 2 MiB segment
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; i < blocks.size(); ++i) CHECK(blocks[i] - blocks[i - 1] >= 10240);
  CHECK(a.allocated_bytes() == 100 * 10240 + 1024);
  CHECK(a.reserved_bytes() == 2 * MiB);
  CHECK(a.ledger().current_bytes() == 100 * 10240 + 900);
}

TEST_CASE("caching allocator: split large segments, merge free neighbours") {
  HostSegments source;
  CachingAllocator a(source);
  char* x = static_cast<char*>(a.allocate(5 * MiB, Component::Weights));  // a 20 MiB segment, 15 MiB left
  char* y = static_cast<char*>(a.allocate(5 * MiB, Component::Gradients));
  char* z = static_cast<char*>(a.allocate(5 * MiB, Component::MasterWeights));
  CHECK(a.segments() == 1);
  CHECK(y == x + 5 * MiB);
  CHECK(z == y + 5 * MiB);
  a.release(y);
  a.release(x);  // x and y merge: 10 MiB free at x
  CHECK(a.allocate(10 * MiB, Component::OptimizerStates) == x);
  CHECK(a.segments() == 1);
  void* big = a.allocate(30 * MiB, Component::Activations);  // its own segment, exactly 30 MiB
  CHECK(a.segments() == 2);
  CHECK(a.reserved_bytes() == 50 * MiB);
  a.release(big);
  a.empty_cache();
  CHECK(a.reserved_bytes() == 20 * MiB);
  CHECK(source.held() == 20 * MiB);
}

TEST_CASE("caching allocator: the ledger per component, retagging, peaks") {
  HostSegments source;
  CachingAllocator a(source);
  void* w = a.allocate(3000, Component::Weights);
  void* x = a.allocate(7000, Component::Activations);
  a.retag(x, Component::Logits);
  CHECK(a.ledger().current_bytes(Component::Logits) == 7000);
  CHECK(a.ledger().current_bytes(Component::Activations) == 0);
  a.release(x);
  CHECK(a.ledger().peak_bytes() == 10000);
  CHECK(a.ledger().at_peak()[static_cast<int>(Component::Activations)] == 7000);  // tagged so at the peak
  CHECK(a.peak_allocated_bytes() == 3072 + 7168);
  CHECK(a.allocated_bytes() == 3072);
  a.release(w);
  CHECK(a.live_allocations() == 0);
  CHECK(a.reserved_bytes() == 2 * MiB);  // cached, not returned
}

TEST_CASE("caching allocator: out of memory empties the cache and retries, then throws") {
  HostSegments source(24 * MiB);
  CachingAllocator a(source);
  void* p = a.allocate(5 * MiB, Component::Activations);  // a 20 MiB segment
  a.release(p);                                           // cached
  void* q = a.allocate(22 * MiB, Component::Activations); // 20 + 22 > 24: the cached segment goes back first
  CHECK(q != nullptr);
  CHECK(a.reserved_bytes() == 22 * MiB);
  CHECK_THROWS_AS(a.allocate(22 * MiB, Component::Activations), std::bad_alloc);
  CHECK(a.live_allocations() == 1);
  CHECK(a.ledger().current_bytes() == 22 * MiB);
}

TEST_CASE("caching allocator: a random sequence keeps blocks apart and accounts for every byte") {
  std::mt19937_64 rng(5);
  HostSegments source;
  {
    CachingAllocator a(source);
    std::map<char*, uint64_t> live;  // pointer -> requested bytes
    uint64_t requested = 0;
    for (int step = 0; step < 20000; ++step) {
      if (live.empty() || (live.size() < 300 && rng() % 2 == 0)) {
        // Mostly small tensors, some large ones (to 24 MiB), as a model's step allocates.
        const uint64_t bytes = rng() % 8 == 0 ? 1 + rng() % (24 * MiB) : 1 + rng() % (64 * 1024);
        char* p = static_cast<char*>(a.allocate(bytes, static_cast<Component>(rng() % 12)));
        const auto next = live.lower_bound(p);
        if (next != live.end()) REQUIRE(p + bytes <= next->first);
        if (next != live.begin()) REQUIRE(std::prev(next)->first + std::prev(next)->second <= p);
        live[p] = bytes;
        requested += bytes;
        std::fill(p, p + std::min<uint64_t>(bytes, 64), static_cast<char>(step));  // the memory is usable
      } else {
        auto it = live.begin();
        std::advance(it, static_cast<long>(rng() % live.size()));
        requested -= it->second;
        a.release(it->first);
        live.erase(it);
      }
      REQUIRE(a.ledger().current_bytes() == requested);
      REQUIRE(a.allocated_bytes() >= requested);
      REQUIRE(a.reserved_bytes() >= a.allocated_bytes());
      REQUIRE(source.held() == a.reserved_bytes());
    }
    MESSAGE("random sequence: " << a.source_allocations() << " segments asked for, peak reserved "
                                << a.peak_reserved_bytes() / MiB << " MiB for a peak of "
                                << a.ledger().peak_bytes() / MiB << " MiB requested");
    CHECK(a.source_allocations() < 500);  // about 10,000 allocations: the cache serves nearly all
    while (live.size() > 3) {
      a.release(live.begin()->first);
      live.erase(live.begin());
    }
  }  // three blocks still live: the destructor returns their segments too (HostSegments checks)
  CHECK(source.held() == 0);
}
