#include "executor/zero_units.h"

#include <algorithm>
#include <type_traits>

namespace zp {

template <class T>
ZeroUnits<T>::ZeroUnits(OffloadBridge<T>& bridge, Communicator& comm, const std::vector<size_t>& unit_sizes,
                        TrackingAllocator* device, TrackingAllocator* grad_home, Component grad_tag, bool partition_params,
                        TrackingAllocator* param_home)
    : bridge_(bridge), be_(bridge.model()), comm_(comm), device_(device) {
  const size_t world = static_cast<size_t>(comm.size());
  size_t total = 0, largest = 0, start = 0;
  for (size_t n : unit_sizes) {
    chunk_.push_back((n + world - 1) / world);
    offset_.push_back(total);
    start_.push_back(start);
    total += chunk_.back();
    start += n;
    largest = std::max(largest, chunk_.back());
  }
  total_ = total;
  replicated_ = !partition_params;
  if (partition_params) params = make_buffer<T>(param_home, Component::Weights, total);
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
  if (grad_home != device) drain_ = std::make_unique<HostGradientDrain<T>>(be_.device(), bridge_.optimizer(), grad_home, largest);
}

template <class T>
size_t ZeroUnits<T>::owned_first(size_t u) const {
  return start_[u] + std::min(static_cast<size_t>(comm_.rank()) * chunk_[u], sizes_[u]);
}

template <class T>
size_t ZeroUnits<T>::owned_count(size_t u) const {
  const size_t begin = std::min(static_cast<size_t>(comm_.rank()) * chunk_[u], sizes_[u]);
  return std::min(chunk_[u], sizes_[u] - begin);
}

template <class T>
void ZeroUnits<T>::partition(T* full) {
  if (replicated_) {
    full_ = full;  // ZeRO-2: the model keeps its parameters
    return;
  }
  for (size_t u = 0; u < chunk_.size(); ++u) {
    // This rank's chunk; the tail past the unit's end stays zero.
    mover(params.home().device(), be_.device())
        .copy(params.data() + offset_[u], full + owned_first(u), owned_count(u) * sizeof(T));
  }
}

template <class T>
void ZeroUnits<T>::zero_gradients() {
  if (drain_) drain_->wait();
  fill_zero(gradients_fp32);
  fill_zero(gradients_low);
}

template <class T>
void ZeroUnits<T>::gather(size_t u) {
  if (replicated()) return;
  Buffer<T>& g = gathered_[u];
  if (!g.empty()) return;  // already here (prefetched)
  g.allocate(chunk_[u] * static_cast<size_t>(comm_.size()));  // the gather writes every slot
  comm_.all_gather(params.data() + offset_[u], g.data(), chunk_[u]);
  gathered_now_ += g.size() * sizeof(T);
  peak_gathered_ = std::max(peak_gathered_, gathered_now_);
}

template <class T>
const T* ZeroUnits<T>::acquire(int unit) {
  if (replicated()) return full_ + start_[static_cast<size_t>(unit)];
  gather(static_cast<size_t>(unit));
  return gathered_[static_cast<size_t>(unit)].data();
}

template <class T>
void ZeroUnits<T>::prefetch(int unit) { gather(static_cast<size_t>(unit)); }

template <class T>
void ZeroUnits<T>::release(int unit) {
  if (replicated()) return;
  Buffer<T>& g = gathered_[static_cast<size_t>(unit)];
  gathered_now_ -= g.size() * sizeof(T);
  release_buffer(g);  // give the memory back now
}

template <class T>
T* ZeroUnits<T>::gradients(int unit) {
  const auto u = static_cast<size_t>(unit);
  Buffer<T>& b = buckets_[u];
  if (b.empty()) b.assign(chunk_[u] * static_cast<size_t>(comm_.size()), T(0));
  return b.data();
}

template <class T>
void ZeroUnits<T>::finished(int unit) {
  if (!deferred_[static_cast<size_t>(unit)]) reduce_scatter(static_cast<size_t>(unit));
}

template <class T>
void ZeroUnits<T>::flush() {
  for (size_t u = 0; u < deferred_.size(); ++u) {
    if (deferred_[u] && !buckets_[u].empty()) reduce_scatter(u);
  }
  if (drain_) drain_->wait();  // every reduced chunk is in the partition
}

template <class T>
void ZeroUnits<T>::reduce_scatter(size_t u) {
  Buffer<T>& b = buckets_[u];
  comm_.reduce_scatter_sum(b.data(), received_.data(), chunk_[u]);
  float* fp32 = fp32_gradients() ? gradients_fp32.data() + offset_[u] : nullptr;
  T* low = fp32 ? nullptr : gradients_low.data() + offset_[u];
  if (drain_) {
    // Offloaded: copied to the host and added there while backward goes on.
    drain_->add(received_.data(), chunk_[u], fp32, low);
  } else if (fp32) {
    // Added where the partition lives, on the model's device.
    be_.add_into_fp32(fp32, received_.data(), chunk_[u], true);
  } else {
    be_.add_into(low, received_.data(), chunk_[u], true);
  }
  release_buffer(b);
}

template class ZeroUnits<float>;
template class ZeroUnits<bf16>;

}  // namespace zp
