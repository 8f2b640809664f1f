#include "executor/caching_allocator.h"

#include <algorithm>
#include <new>

namespace zp {

uint64_t CachingAllocator::round_size(uint64_t bytes) {
  return bytes < kMinBlockSize ? kMinBlockSize : (bytes + kMinBlockSize - 1) / kMinBlockSize * kMinBlockSize;
}

uint64_t CachingAllocator::segment_size(uint64_t rounded) {
  if (rounded <= kSmallSize) return kSmallBuffer;
  if (rounded < kMinLargeAlloc) return kLargeBuffer;
  return (rounded + kRoundLarge - 1) / kRoundLarge * kRoundLarge;
}

CachingAllocator::~CachingAllocator() {
  for (Block* head : segments_) {
    char* const base = head->ptr;
    uint64_t bytes = 0;
    for (Block* b = head; b;) {
      bytes += b->size;
      Block* next = b->next;
      delete b;
      b = next;
    }
    source_.release(base, bytes);
  }
}

CachingAllocator::Block* CachingAllocator::find_free(bool small, uint64_t size) {
  Pool& p = pool(small);
  Block key;
  key.size = size;
  const auto it = p.lower_bound(&key);  // the smallest that fits, lowest address among equals
  if (it == p.end()) return nullptr;
  Block* b = *it;
  p.erase(it);
  return b;
}

CachingAllocator::Block* CachingAllocator::new_segment(bool small, uint64_t size) {
  void* p = source_.allocate(size);
  if (!p) {
    empty_cache();
    p = source_.allocate(size);
  }
  if (!p) return nullptr;
  ++source_allocations_;
  Block* b = new Block;
  b->ptr = static_cast<char*>(p);
  b->size = size;
  b->small = small;
  segments_.push_back(b);
  reserved_ += size;
  peak_reserved_ = std::max(peak_reserved_, reserved_);
  return b;
}

void* CachingAllocator::allocate(uint64_t bytes, Component tag) {
  if (bytes == 0) return nullptr;
  const uint64_t size = round_size(bytes);
  const bool small = size <= kSmallSize;
  Block* b = find_free(small, size);
  if (!b) b = new_segment(small, segment_size(size));
  if (!b) throw std::bad_alloc();
  // Split off the rest when it is worth keeping as a block of its own.
  const uint64_t rest = b->size - size;
  if (small ? rest >= kMinBlockSize : rest > kSmallSize) {
    Block* r = new Block;
    r->ptr = b->ptr + size;
    r->size = rest;
    r->small = small;
    r->prev = b;
    r->next = b->next;
    if (b->next) b->next->prev = r;
    b->next = r;
    b->size = size;
    pool(small).insert(r);
  }
  b->allocated = true;
  b->requested = bytes;
  b->tag = tag;
  live_.emplace(b->ptr, b);
  allocated_ += b->size;
  peak_allocated_ = std::max(peak_allocated_, allocated_);
  ledger_.add(bytes, tag);
  return b->ptr;
}

void CachingAllocator::merge_into(Block* into, Block* gone) {
  // `gone` follows `into` in the segment.
  into->size += gone->size;
  into->next = gone->next;
  if (gone->next) gone->next->prev = into;
  delete gone;
}

void CachingAllocator::release(void* p) {
  if (!p) return;
  const auto it = live_.find(p);
  if (it == live_.end()) return;
  Block* b = it->second;
  live_.erase(it);
  ledger_.remove(b->requested, b->tag);
  allocated_ -= b->size;
  b->allocated = false;
  Pool& free_pool = pool(b->small);
  if (b->next && !b->next->allocated) {
    free_pool.erase(b->next);
    merge_into(b, b->next);
  }
  if (b->prev && !b->prev->allocated) {
    Block* prev = b->prev;
    free_pool.erase(prev);
    merge_into(prev, b);
    b = prev;
  }
  free_pool.insert(b);
}

void CachingAllocator::retag(const void* p, Component tag) {
  const auto it = live_.find(const_cast<void*>(p));
  if (it == live_.end()) return;
  ledger_.move(it->second->requested, it->second->tag, tag);
  it->second->tag = tag;
}

void CachingAllocator::free_segment(Block* head) {
  pool(head->small).erase(head);
  reserved_ -= head->size;
  source_.release(head->ptr, head->size);
  delete head;
}

void CachingAllocator::empty_cache() {
  std::vector<Block*> kept;
  for (Block* head : segments_) {
    // A wholly free segment is one free block with no neighbours.
    if (!head->allocated && !head->next) {
      free_segment(head);
    } else {
      kept.push_back(head);
    }
  }
  segments_.swap(kept);
}

}  // namespace zp
