// OffloadBridge<T>: where an optimizer runs and how its data gets there.
// Without offload, or on the CPU backend (where the host is the model's
// device), it is the model's backend and nothing moves. With the optimizer
// offloaded from a GPU (ZeRO-Offload), it is a host backend, and the
// weights it updates and the reduced gradients it sums cross through one
// host staging buffer (DeepSpeed's pinned buffers of ZeRO-Offload), tagged
// offload_staging in the optimizer side's allocator. Shared by the
// data-parallel trainer and ZeRO-3's units, which use it one after the other.
#pragma once

#include <cstddef>
#include <memory>

#include "executor/backend.h"
#include "executor/tagged_buffer.h"

namespace zp {

template <class T>
class OffloadBridge {
 public:
  // `model`: the model's backend; `home`: the allocator of the optimizer's
  // states (host memory under offload).
  OffloadBridge(Backend<T>& model, TrackingAllocator* home)
      : model_(model), staging_(make_buffer<T>(home, Component::OffloadStaging)) {
    if (&staging_.home().device() != &model.device()) host_ = make_backend<T>(home);
  }
  Backend<T>& model() { return model_; }
  // Where the optimizer runs.
  Backend<T>& optimizer() { return host_ ? *host_ : model_; }
  // Whether memory on `device` is elsewhere than where the optimizer runs.
  bool elsewhere(const Device& device) { return &device != &optimizer().device(); }
  // `count` elements on `from_device`, where the optimizer can read them:
  // themselves, or their copy in the staging buffer.
  const T* reach(const T* from, Device& from_device, size_t count) {
    return elsewhere(from_device) ? stage(from, from_device, count) : from;
  }
  // Their copy in the staging buffer (valid until the next stage), and the
  // way back.
  T* stage(const T* from, Device& from_device, size_t count) {
    if (staging_.size() < count) staging_.assign(count, T(0));  // grows once; copies overwrite it
    mover(from_device, optimizer().device()).copy(staging_.data(), from, count * sizeof(T));
    return staging_.data();
  }
  void unstage(T* to, Device& to_device, const T* staged, size_t count) {
    mover(to_device, optimizer().device()).copy(to, staged, count * sizeof(T));
  }

 private:
  Backend<T>& model_;
  std::unique_ptr<Backend<T>> host_;
  Buffer<T> staging_;
};

}  // namespace zp
