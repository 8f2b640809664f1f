// Buffer<T>: a std::vector whose storage comes from a TrackingAllocator under
// a component tag (weights, gradients, activations, ...), so every buffer the
// executor's models and trainers hold is counted where the cost model counts
// it. Without a tracker (tests in double precision) it is an ordinary vector.
#pragma once

#include <cstddef>
#include <memory>
#include <type_traits>
#include <vector>

#include "executor/tracking_allocator.h"

namespace zp {

template <class T>
class TaggedAllocator {
 public:
  using value_type = T;
  // Moving or swapping a buffer takes its allocator along (the storage keeps its tag).
  using propagate_on_container_move_assignment = std::true_type;
  using propagate_on_container_swap = std::true_type;
  using propagate_on_container_copy_assignment = std::false_type;

  TaggedAllocator() = default;
  TaggedAllocator(TrackingAllocator* tracker, Component tag) : tracker_(tracker), tag_(tag) {}
  template <class U>
  TaggedAllocator(const TaggedAllocator<U>& o) : tracker_(o.tracker()), tag_(o.tag()) {}

  T* allocate(size_t n) {
    if (!tracker_) return std::allocator<T>{}.allocate(n);
    return static_cast<T*>(tracker_->allocate(n * sizeof(T), tag_));
  }
  void deallocate(T* p, size_t n) {
    if (!tracker_) return std::allocator<T>{}.deallocate(p, n);
    tracker_->release(p);
  }
  TrackingAllocator* tracker() const { return tracker_; }
  Component tag() const { return tag_; }
  template <class U>
  bool operator==(const TaggedAllocator<U>& o) const { return tracker_ == o.tracker() && tag_ == o.tag(); }

 private:
  TrackingAllocator* tracker_ = nullptr;
  Component tag_ = Component::Workspace;
};

template <class T>
using Buffer = std::vector<T, TaggedAllocator<T>>;

template <class T>
Buffer<T> make_buffer(TrackingAllocator* tracker, Component tag, size_t n = 0) {
  Buffer<T> b{TaggedAllocator<T>(tracker, tag)};
  b.assign(n, T(0));
  return b;
}

// Sizes `b` to n zeros under `tag` from `tracker`, reallocating only when the
// tracker or the tag changes (the models' activation buffers, step after step).
template <class T>
void ensure_buffer(Buffer<T>& b, TrackingAllocator* tracker, Component tag, size_t n) {
  if (b.get_allocator().tracker() != tracker || b.get_allocator().tag() != tag) {
    b = make_buffer<T>(tracker, tag, n);
  } else {
    b.assign(n, T(0));
  }
}

}  // namespace zp
