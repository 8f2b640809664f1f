#include "executor/zero3.h"

#include <algorithm>
#include <type_traits>

namespace zp {

template <class T>
Zero3Units<T>::Zero3Units(OffloadBridge<T>& bridge, Communicator& comm, const std::vector<size_t>& unit_sizes,
                          TrackingAllocator* device, TrackingAllocator* grad_home, Component grad_tag,
                          TrackingAllocator* param_home)
    : bridge_(bridge), be_(bridge.model()), comm_(comm) {
  const size_t world = static_cast<size_t>(comm.size());
  size_t total = 0, largest = 0;
  for (size_t n : unit_sizes) {
    chunk_.push_back((n + world - 1) / world);
    offset_.push_back(total);
    total += chunk_.back();
    largest = std::max(largest, chunk_.back());
  }
  params = make_buffer<T>(param_home, Component::Weights, total);
  fp32_grads_ = std::is_same_v<T, float> || grad_tag == Component::MainGradients;
  if (fp32_grads_) {
    gradients_fp32 = make_buffer<float>(grad_home, grad_tag, total);
  } else {
    gradients_low = make_buffer<T>(grad_home, grad_tag, total);
  }
  received_ = make_buffer<T>(device, Component::Buckets, largest);
  gathered_.resize(unit_sizes.size());
  buckets_.resize(unit_sizes.size());
  for (size_t u = 0; u < unit_sizes.size(); ++u) {
    gathered_[u] = make_buffer<T>(device, Component::Zero3Gathered);
    buckets_[u] = make_buffer<T>(device, Component::Buckets);
  }
  sizes_ = unit_sizes;
  deferred_.assign(unit_sizes.size(), false);
}

template <class T>
void Zero3Units<T>::partition(const T* full) {
  const size_t rank = static_cast<size_t>(comm_.rank());
  size_t unit_start = 0;
  for (size_t u = 0; u < chunk_.size(); ++u) {
    // This rank's chunk; the tail past the unit's end stays zero.
    const size_t begin = std::min(rank * chunk_[u], sizes_[u]), count = std::min(chunk_[u], sizes_[u] - begin);
    mover(params.home().device(), be_.device())
        .copy(params.data() + offset_[u], full + unit_start + begin, count * sizeof(T));
    unit_start += sizes_[u];
  }
}

template <class T>
void Zero3Units<T>::zero_gradients() {
  fill_zero(gradients_fp32);
  fill_zero(gradients_low);
}

template <class T>
void Zero3Units<T>::gather(size_t u) {
  Buffer<T>& g = gathered_[u];
  if (!g.empty()) return;  // already here (prefetched)
  g.assign(chunk_[u] * static_cast<size_t>(comm_.size()), T(0));
  comm_.all_gather(params.data() + offset_[u], g.data(), chunk_[u]);
  gathered_now_ += g.size() * sizeof(T);
  peak_gathered_ = std::max(peak_gathered_, gathered_now_);
}

template <class T>
const T* Zero3Units<T>::acquire(int unit) {
  gather(static_cast<size_t>(unit));
  return gathered_[static_cast<size_t>(unit)].data();
}

template <class T>
void Zero3Units<T>::prefetch(int unit) { gather(static_cast<size_t>(unit)); }

template <class T>
void Zero3Units<T>::release(int unit) {
  Buffer<T>& g = gathered_[static_cast<size_t>(unit)];
  gathered_now_ -= g.size() * sizeof(T);
  release_buffer(g);  // give the memory back now
}

template <class T>
T* Zero3Units<T>::gradients(int unit) {
  const auto u = static_cast<size_t>(unit);
  Buffer<T>& b = buckets_[u];
  if (b.empty()) b.assign(chunk_[u] * static_cast<size_t>(comm_.size()), T(0));
  return b.data();
}

template <class T>
void Zero3Units<T>::finished(int unit) {
  if (!deferred_[static_cast<size_t>(unit)]) reduce_scatter(static_cast<size_t>(unit));
}

template <class T>
void Zero3Units<T>::flush() {
  for (size_t u = 0; u < deferred_.size(); ++u) {
    if (deferred_[u] && !buckets_[u].empty()) reduce_scatter(u);
  }
}

template <class T>
void Zero3Units<T>::reduce_scatter(size_t u) {
  Buffer<T>& b = buckets_[u];
  comm_.reduce_scatter_sum(b.data(), received_.data(), chunk_[u]);
  // Added where the partition lives: on the model's device, or (optimizer
  // offload on a GPU) copied to the host and added there.
  const T* chunk = bridge_.reach(received_.data(), be_.device(), chunk_[u]);
  Backend<T>& at = bridge_.optimizer();
  if (fp32_gradients()) {
    at.add_into_fp32(gradients_fp32.data() + offset_[u], chunk, chunk_[u], true);
  } else {
    at.add_into(gradients_low.data() + offset_[u], chunk, chunk_[u], true);
  }
  release_buffer(b);
}

template class Zero3Units<float>;
template class Zero3Units<bf16>;

}  // namespace zp
