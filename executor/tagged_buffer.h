// Buffer<T>: a flat array whose storage comes from a TrackingAllocator under
// a component tag (weights, gradients, activations, ...), so every buffer the
// executor's models and trainers hold is counted where the cost model counts
// it. The bytes live on the allocator's Device (host memory for the CPU
// backend, GPU memory for the CUDA one), so a buffer is zeroed and copied
// through that device, never element by element; element access (operator[],
// begin, end) is for host-accessible devices only. Growth follows
// std::vector's (libstdc++) rules: assign() reallocates to exactly n when n
// exceeds the capacity, resize() to max(2 size, n); the new block is taken
// before the old goes, so the measured peaks are a vector's. Without a
// tracker (tests in double precision) the storage is plain host memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "executor/poison.h"
#include "executor/tracking_allocator.h"

namespace zp {

class BufferHome {
 public:
  BufferHome() = default;
  BufferHome(TrackingAllocator* tracker, Component tag) : tracker_(tracker), tag_(tag) {}
  TrackingAllocator* tracker() const { return tracker_; }
  Component tag() const { return tag_; }
  Device& device() const { return tracker_ ? tracker_->device() : host_device(); }
  void* allocate(size_t bytes) const {
    if (!tracker_) return bytes ? ::operator new(bytes) : nullptr;
    return tracker_->allocate(bytes, tag_);
  }
  void release(void* p) const {
    if (!tracker_) return ::operator delete(p);
    tracker_->release(p);
  }

 private:
  TrackingAllocator* tracker_ = nullptr;
  Component tag_ = Component::Workspace;
};

template <class T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "buffers hold plain numbers");

 public:
  using value_type = T;
  Buffer() = default;
  explicit Buffer(BufferHome home) : home_(home) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept { swap(o); }
  // The moved-from buffer keeps this one's old storage until it goes.
  Buffer& operator=(Buffer&& o) noexcept {
    swap(o);
    return *this;
  }
  ~Buffer() { home_.release(data_); }

  const BufferHome& home() const { return home_; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }

  // n zeros (the only value the models fill with; done on the device).
  void assign(size_t n, T zero) {
    (void)zero;
    if (n > capacity_) reallocate(n, false);
    size_ = n;
    home_.device().zero(data_, n * sizeof(T));
  }
  // n elements the caller writes, every one, before anything reads them (a
  // forward kernel's output, a collective's receive buffer): no fill, which
  // on a GPU saves a memset of the whole buffer each time (the activations of
  // every layer and micro-batch). Poisoned under poison_unwritten().
  void allocate(size_t n) {
    if (n > capacity_) reallocate(n, false);
    size_ = n;
    if (poison_unwritten()) home_.device().fill_bytes(data_, 0xff, n * sizeof(T));
  }
  // Keeps the first min(size, n) elements; new ones are zero.
  void resize(size_t n) {
    if (n > capacity_) reallocate(std::max(2 * size_, n), true);
    if (n > size_) home_.device().zero(data_ + size_, (n - size_) * sizeof(T));
    size_ = n;
  }
  void swap(Buffer& o) noexcept {
    std::swap(home_, o.home_);
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  // Host-side access (host-accessible devices only).
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }

 private:
  void reallocate(size_t capacity, bool keep) {
    T* fresh = static_cast<T*>(home_.allocate(capacity * sizeof(T)));
    if (keep && size_) home_.device().copy(fresh, data_, size_ * sizeof(T));
    home_.release(data_);
    data_ = fresh;
    capacity_ = capacity;
  }
  BufferHome home_;
  T* data_ = nullptr;
  size_t size_ = 0, capacity_ = 0;
};

template <class T>
Buffer<T> make_buffer(TrackingAllocator* tracker, Component tag, size_t n = 0) {
  Buffer<T> b{BufferHome(tracker, tag)};
  b.assign(n, T(0));
  return b;
}

// Sizes `b` to n zeros under `tag` from `tracker`, reallocating only when the
// tracker or the tag changes or n exceeds its capacity (the models'
// activation buffers, step after step).
template <class T>
void ensure_buffer(Buffer<T>& b, TrackingAllocator* tracker, Component tag, size_t n) {
  if (b.home().tracker() != tracker || b.home().tag() != tag) {
    b = make_buffer<T>(tracker, tag, n);
  } else {
    b.assign(n, T(0));
  }
}

// As make_buffer and ensure_buffer, for n elements the caller writes whole
// before reading them (Buffer::allocate): not zeroed.
template <class T>
Buffer<T> make_output_buffer(TrackingAllocator* tracker, Component tag, size_t n) {
  Buffer<T> b{BufferHome(tracker, tag)};
  b.allocate(n);
  return b;
}
template <class T>
void ensure_output_buffer(Buffer<T>& b, TrackingAllocator* tracker, Component tag, size_t n) {
  if (b.home().tracker() != tracker || b.home().tag() != tag) b = Buffer<T>{BufferHome(tracker, tag)};
  b.allocate(n);
}

// The elements, copied to host memory (from any device).
template <class T>
std::vector<T> host_copy(const Buffer<T>& b) {
  std::vector<T> out(b.size());
  b.home().device().copy(out.data(), b.data(), b.size() * sizeof(T));
  return out;
}

// The first n elements of `b` from `src` (host memory or b's device).
template <class T>
void copy_in(Buffer<T>& b, const T* src, size_t n) {
  b.home().device().copy(b.data(), src, n * sizeof(T));
}

// Every element zero, through the buffer's device.
template <class T>
void fill_zero(Buffer<T>& b) {
  b.home().device().zero(b.data(), b.size() * sizeof(T));
}

// Of two devices, the one that moves bytes between them: a GPU's copies
// reach host memory, the host's do not reach a GPU's.
inline Device& mover(Device& a, Device& b) { return a.is_gpu() ? a : b; }

// Gives the storage back now (the buffer stays, empty, with its home).
template <class T>
void release_buffer(Buffer<T>& b) {
  Buffer<T>(b.home()).swap(b);
}

}  // namespace zp
