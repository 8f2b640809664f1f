// ZeRO-3 (the ZeRO paper's P_os+g+p, arXiv 1910.02054 Sec. 5.3): each rank
// keeps 1/dp of every unit's parameters (the unit padded to dp equal
// chunks, the way DeepSpeed partitions each parameter), all-gathers a unit
// when the model acquires it and frees it on release; backward's gradients of
// a unit go to a unit-sized bucket that is reduce-scattered into the rank's
// gradient partition as soon as the unit is finished. Forward all-gathers
// every unit once, backward once more, and the gradients are reduce-scattered
// once: 3 Psi per micro-batch, the overview's ZeRO-3 volume. The model names
// the unit it needs next and it is gathered ahead, so the current and the
// next unit are held together (the cost model's zeroplan working set).
// T is the model's scalar (fp32, or bf16 under mixed precision: parameters
// gathered and gradients reduced in bf16); the gradient partition is fp32
// when the optimizer is offloaded (the host optimizer's main gradients) or
// the model is fp32, bf16 otherwise.
#pragma once

#include <cstddef>
#include <vector>

#include "executor/communicator.h"
#include "executor/offload_bridge.h"
#include "executor/param_units.h"
#include "executor/tagged_buffer.h"

namespace zp {

template <class T>
class Zero3Units : public UnitProvider<T> {
 public:
  // unit_sizes: elements of each unit, in the model's order. The partition
  // of the parameters lives in `param_home` (the device, or the host under
  // ZeRO-Infinity's parameter offload: gathers then read it from there);
  // the gradient partition under `grad_tag` in `grad_home` (the host, as
  // fp32 main gradients, when the optimizer is offloaded); gathered units and
  // buckets on the device.
  // `bridge` holds the model's backend (on `device`'s memory), which zeroes,
  // copies and sums the gathered units and buckets, and the way to a
  // gradient partition in the optimizer's memory (the trainer's bridge).
  Zero3Units(OffloadBridge<T>& bridge, Communicator& comm, const std::vector<size_t>& unit_sizes, TrackingAllocator* device,
             TrackingAllocator* grad_home, Component grad_tag, TrackingAllocator* param_home);

  // Takes this rank's chunks of the model's whole flat parameters.
  void partition(const T* full);
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
  size_t shard_size() const { return params.size(); }
  uint64_t peak_gathered_bytes() const { return peak_gathered_; }

 private:
  OffloadBridge<T>& bridge_;
  Backend<T>& be_;
  Communicator& comm_;
  std::vector<size_t> sizes_, chunk_, offset_;  // per unit: elements, chunk length, its place in the partition
  std::vector<Buffer<T>> gathered_, buckets_;
  Buffer<T> received_;
  uint64_t gathered_now_ = 0, peak_gathered_ = 0;
  bool fp32_grads_ = true;
  std::vector<bool> deferred_;
  void reduce_scatter(size_t unit);
  void gather(size_t unit);
};

}  // namespace zp
