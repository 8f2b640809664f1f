// ZeroUnits: a model's units partitioned over the data-parallel ranks, unit
// by unit (each unit padded to dp equal chunks, the way DeepSpeed partitions
// each parameter; rank r owns chunk r of every unit), for ZeRO-2 and ZeRO-3.
// Backward's gradients of a unit go to a unit-sized bucket that is
// reduce-scattered into the rank's gradient partition as soon as the unit is
// finished and then freed, so no rank ever holds the whole gradient (the ZeRO
// paper's P_os+g, arXiv 1910.02054 Sec. 5.2; DeepSpeed's stage-2 reduces
// its buckets during backward the same way).
//  - ZeRO-3 (P_os+g+p, Sec. 5.3): each rank keeps its
//    chunks of the parameters, all-gathers a unit when the model acquires it
//    and frees it on release. Forward all-gathers every unit once, backward
//    once more, and the gradients are reduce-scattered once: 3 Psi per
//    micro-batch, the overview's ZeRO-3 volume. The model names the unit it
//    needs next and it is gathered ahead, so the current and the next unit
//    are held together (the cost model's zeroplan working set).
//  - ZeRO-2: the parameters stay whole in the model;
//    acquire() points into them, and after the optimizer step
//    gather_updated() all-gathers each unit's updated chunks back into them
//    (2 Psi per step with the reduce-scatters).
// T is the model's scalar (fp32, or bf16 under mixed precision: parameters
// gathered and gradients reduced in bf16); the gradient partition is fp32
// when the optimizer is offloaded (the host optimizer's main gradients) or
// the model is fp32, bf16 otherwise. Offloaded, each reduced chunk reaches
// the host partition through a HostGradientDrain while backward goes on.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>
#include <vector>

#include "executor/communicator.h"
#include "executor/host_gradient_drain.h"
#include "executor/offload_bridge.h"
#include "executor/param_units.h"
#include "executor/tagged_buffer.h"

namespace zp {

template <class T>
class ZeroUnits : public UnitProvider<T> {
 public:
  // unit_sizes: elements of each unit, in the model's order. The partition
  // of the parameters lives in `param_home` (the device, or the host under
  // ZeRO-Infinity's parameter offload: gathers then read it from there) when
  // `partition_params` (ZeRO-3); otherwise they stay whole in the model (ZeRO-2);
  // the gradient partition under `grad_tag` in `grad_home` (the host, as
  // fp32 main gradients, when the optimizer is offloaded); gathered units and
  // buckets on the device.
  // `bridge` holds the model's backend (on `device`'s memory), which zeroes,
  // copies and sums the gathered units and buckets, and the way to a
  // gradient partition in the optimizer's memory (the trainer's bridge).
  ZeroUnits(OffloadBridge<T>& bridge, Communicator& comm, const std::vector<size_t>& unit_sizes, TrackingAllocator* device,
            TrackingAllocator* grad_home, Component grad_tag, bool partition_params, TrackingAllocator* param_home);

  // ZeRO-3: takes this rank's chunks of the model's whole flat parameters.
  // ZeRO-2: keeps `full` (the model's own parameters, which stay) for acquire().
  void partition(T* full);
  // ZeRO-2, after the optimizer step: unit by unit, `updated(u, chunk)`
  // writes this rank's updated chunk of unit u (chunk_size(u) elements,
  // the padded tail zero), which is all-gathered into the model's
  // parameters. Its buffers live for this call only.
  template <class F>
  void gather_updated(F&& updated);
  // Zeroes the gradient partition (the start of a step).
  void zero_gradients();
  // Keeps `unit`'s gradient bucket, accumulating over the step's
  // micro-batches, instead of reduce-scattering it as each backward finishes
  // it (a pipeline's tied embedding: the end stages sum it first); flush()
  // reduce-scatters the kept buckets. gradients(unit) reaches it meanwhile.
  void defer(int unit) { deferred_.at(static_cast<size_t>(unit)) = true; }
  void flush();

  const T* acquire(int unit) override;
  void prefetch(int unit) override;
  void release(int unit) override;
  T* gradients(int unit) override;
  void finished(int unit) override;

  Buffer<T> params;  // the rank's chunks of every unit, concatenated
  // The same layout: the reduced gradient partition, in one of the two
  // (fp32_gradients() says which).
  Buffer<float> gradients_fp32;
  Buffer<T> gradients_low;
  bool fp32_gradients() const { return fp32_grads_; }
  size_t shard_size() const { return total_; }
  size_t num_units() const { return sizes_.size(); }
  size_t chunk_size(size_t unit) const { return chunk_[unit]; }
  size_t partition_offset(size_t unit) const { return offset_[unit]; }  // of the unit's chunk, in the partition
  // This rank's elements of `unit` in the model's flat buffer: [first, first + count).
  size_t owned_first(size_t unit) const;
  size_t owned_count(size_t unit) const;
  bool replicated() const { return replicated_; }
  uint64_t peak_gathered_bytes() const { return peak_gathered_; }

 private:
  OffloadBridge<T>& bridge_;
  Backend<T>& be_;
  Communicator& comm_;
  std::vector<size_t> sizes_, chunk_, offset_, start_;  // per unit: elements, chunk length, its place in the partition, in the model
  size_t total_ = 0;
  bool replicated_ = false;
  T* full_ = nullptr;  // ZeRO-2: the model's whole parameters
  TrackingAllocator* device_;
  std::vector<Buffer<T>> gathered_, buckets_;
  Buffer<T> received_;
  uint64_t gathered_now_ = 0, peak_gathered_ = 0;
  bool fp32_grads_ = true;
  std::vector<bool> deferred_;
  // The gradient partition in another allocator than the units (the
  // optimizer offloaded): each reduced chunk goes there through the drain,
  // which is waited for before the partition is read or zeroed. Last, so it
  // stops before the partition goes.
  std::unique_ptr<HostGradientDrain<T>> drain_;
  void reduce_scatter(size_t unit);
  void gather(size_t unit);
};

template <class T>
template <class F>
void ZeroUnits<T>::gather_updated(F&& updated) {
  // A unit that divides into dp chunks is gathered straight into the model;
  // one that does not, through a padded buffer (its tail stays behind).
  const size_t world = static_cast<size_t>(comm_.size());
  size_t largest = 0, largest_padded = 0;
  for (size_t u = 0; u < sizes_.size(); ++u) {
    largest = std::max(largest, chunk_[u]);
    if (chunk_[u] * world != sizes_[u]) largest_padded = std::max(largest_padded, chunk_[u] * world);
  }
  // Each written whole before it is read: by updated(), by the all-gather.
  Buffer<T> send = make_output_buffer<T>(device_, Component::Buckets, largest);
  Buffer<T> whole = make_output_buffer<T>(device_, Component::Buckets, largest_padded);
  for (size_t u = 0; u < sizes_.size(); ++u) {
    if (sizes_[u] == 0) continue;
    updated(u, send.data());
    if (chunk_[u] * world == sizes_[u]) {
      comm_.all_gather(send.data(), full_ + start_[u], chunk_[u]);
    } else {
      comm_.all_gather(send.data(), whole.data(), chunk_[u]);
      be_.copy(full_ + start_[u], whole.data(), sizes_[u]);
    }
  }
}

}  // namespace zp
