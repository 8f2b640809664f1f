#include "executor/zero3.h"

#include <algorithm>

namespace zp {

Zero3Units::Zero3Units(Communicator& comm, const std::vector<size_t>& unit_sizes, TrackingAllocator* device,
                       TrackingAllocator* grad_home, Component grad_tag, TrackingAllocator* param_home)
    : comm_(comm) {
  const size_t world = static_cast<size_t>(comm.size());
  size_t total = 0, largest = 0;
  for (size_t n : unit_sizes) {
    chunk_.push_back((n + world - 1) / world);
    offset_.push_back(total);
    total += chunk_.back();
    largest = std::max(largest, chunk_.back());
  }
  params = make_buffer<float>(param_home, Component::Weights, total);
  gradients_ = make_buffer<float>(grad_home, grad_tag, total);
  received_ = make_buffer<float>(device, Component::Buckets, largest);
  gathered_.resize(unit_sizes.size());
  buckets_.resize(unit_sizes.size());
  for (size_t u = 0; u < unit_sizes.size(); ++u) {
    gathered_[u] = make_buffer<float>(device, Component::Zero3Gathered);
    buckets_[u] = make_buffer<float>(device, Component::Buckets);
  }
  sizes_ = unit_sizes;
}

void Zero3Units::partition(const float* full) {
  const size_t rank = static_cast<size_t>(comm_.rank());
  size_t unit_start = 0;
  for (size_t u = 0; u < chunk_.size(); ++u) {
    const size_t begin = rank * chunk_[u];
    for (size_t i = 0; i < chunk_[u]; ++i) {
      params[offset_[u] + i] = begin + i < sizes_[u] ? full[unit_start + begin + i] : 0.0f;
    }
    unit_start += sizes_[u];
  }
}

void Zero3Units::zero_gradients() { std::fill(gradients_.begin(), gradients_.end(), 0.0f); }

void Zero3Units::gather(size_t u) {
  Buffer<float>& g = gathered_[u];
  if (!g.empty()) return;  // already here (prefetched)
  g.assign(chunk_[u] * static_cast<size_t>(comm_.size()), 0.0f);
  comm_.all_gather(params.data() + offset_[u], g.data(), chunk_[u]);
  gathered_now_ += g.size() * sizeof(float);
  peak_gathered_ = std::max(peak_gathered_, gathered_now_);
}

const float* Zero3Units::acquire(int unit) {
  gather(static_cast<size_t>(unit));
  return gathered_[static_cast<size_t>(unit)].data();
}

void Zero3Units::prefetch(int unit) { gather(static_cast<size_t>(unit)); }

void Zero3Units::release(int unit) {
  Buffer<float>& g = gathered_[static_cast<size_t>(unit)];
  gathered_now_ -= g.size() * sizeof(float);
  Buffer<float>(g.get_allocator()).swap(g);  // give the memory back now
}

float* Zero3Units::gradients(int unit) {
  const auto u = static_cast<size_t>(unit);
  Buffer<float>& b = buckets_[u];
  if (b.empty()) b.assign(chunk_[u] * static_cast<size_t>(comm_.size()), 0.0f);
  return b.data();
}

void Zero3Units::finished(int unit) {
  const auto u = static_cast<size_t>(unit);
  Buffer<float>& b = buckets_[u];
  comm_.reduce_scatter_sum(b.data(), received_.data(), chunk_[u]);
  float* mine = gradients_.data() + offset_[u];
  for (size_t i = 0; i < chunk_[u]; ++i) mine[i] += received_[i];
  Buffer<float>(b.get_allocator()).swap(b);
}

}  // namespace zp
