// The memory table: one row per tensor (or buffer) a rank holds at its peak,
// with the component it belongs to, its shape, dtype, how many copies, and
// where it lives (GPU, pinned host memory, NVMe). The cost model sums the
// rows; the executor will allocate from the same rows, so the prediction and
// the allocation cannot drift apart (docs/design.md, "one table, two uses").
//
// Producers write rows into a Sink: TotalsSink only adds bytes per component
// (the planner's hot path, no allocation), RowsSink also keeps every row (for
// `explain`, the executor and tests). Both are fixed-size.
#pragma once

#include <array>
#include <cstdint>

namespace zp {

enum class Component : uint8_t {
  Weights,            // working-precision parameters held by this rank
  Gradients,          // working-precision gradients
  MainGradients,      // fp32 gradient copy (Megatron main_grad, DeepSpeed fp32 grads)
  MasterWeights,      // fp32 master parameters (mixed precision)
  OptimizerStates,    // Adam moments or SGD momentum
  Activations,        // tensors saved for backward, all in-flight micro-batches
  RecomputeWorkspace, // one layer's activations rebuilt during backward
  Logits,             // output-layer logits and loss buffers
  Zero3Gathered,      // ZeRO-3 parameters gathered for the current and prefetched units
  Buckets,            // gradient reduce / all-gather buckets
  OffloadStaging,     // pinned or GPU staging buffers for offload
  Workspace,          // the executor's operator temporaries: forward's projection outputs, backward's
                      // activation gradients (zeroplan rows: costmodel/memory_model.cc)
  BackendScratch,     // a backend's own temporaries: attention score scratch, the CPU backend's fp32
                      // copies of bf16 operands (zeroplan rows: the CUDA backend's)
  CudaContext,        // runtime overheads from here on
  CublasWorkspace,
  NcclBuffers,
  Fragmentation,
  kCount
};
constexpr int kNumComponents = static_cast<int>(Component::kCount);

enum class Residence : uint8_t { Gpu, Host, Nvme };
constexpr int kNumResidences = 3;

enum class Dtype : uint8_t { Bf16, Fp16, Fp32, Int64, Int32, Uint8, Bytes };

const char* to_string(Component c);
const char* to_string(Residence r);
const char* to_string(Dtype d);

constexpr uint64_t dtype_bytes(Dtype d) {
  // A table, not a switch: the memory model's hot path sums rows of mixed
  // dtypes, where a switch's branches mispredict.
  constexpr uint8_t kBytes[] = {2, 2, 4, 8, 4, 1, 1};  // in Dtype's order
  const auto i = static_cast<unsigned>(d);
  return i < sizeof(kBytes) ? kBytes[i] : 1;
}
bool is_runtime_overhead(Component c);
bool is_model_state(Component c);  // weights, gradients, main grads, master, optimizer

struct MemoryRow {
  Component component = Component::Weights;
  Residence residence = Residence::Gpu;
  Dtype dtype = Dtype::Bf16;
  const char* tensor = "";             // static string: what this is
  std::array<uint64_t, 4> shape{};     // elements per copy; unused dims are 1
  uint64_t copies = 1;                 // e.g. layers x micro-batches in flight
  uint64_t bytes = 0;                  // copies * prod(shape) * dtype bytes (or a given size)
};

// Per-residence, per-component byte totals.
struct MemoryTotals {
  std::array<std::array<uint64_t, kNumComponents>, kNumResidences> bytes{};
  uint64_t at(Residence r, Component c) const { return bytes[static_cast<int>(r)][static_cast<int>(c)]; }
  uint64_t total(Residence r) const {
    uint64_t t = 0;
    for (uint64_t b : bytes[static_cast<int>(r)]) t += b;
    return t;
  }
};

class TotalsSink {
 public:
  void add(const MemoryRow& row) {
    totals_.bytes[static_cast<int>(row.residence)][static_cast<int>(row.component)] += row.bytes;
    residence_[static_cast<int>(row.residence)] += row.bytes;
  }
  const MemoryTotals& totals() const { return totals_; }
  uint64_t total(Residence r) const { return residence_[static_cast<int>(r)]; }
  uint64_t gpu_total() const { return residence_[0]; }
  static constexpr bool kWantsRows = false;

 private:
  MemoryTotals totals_{};
  std::array<uint64_t, kNumResidences> residence_{};
};

// Per-residence sums only: what deciding "fits or not" needs.
class ResidenceTotalsSink {
 public:
  ResidenceTotalsSink() = default;
  explicit ResidenceTotalsSink(const TotalsSink& start)
      : bytes_{start.total(Residence::Gpu), start.total(Residence::Host), start.total(Residence::Nvme)} {}
  explicit ResidenceTotalsSink(const std::array<uint64_t, kNumResidences>& start) : bytes_(start) {}
  void add(const MemoryRow& row) { bytes_[static_cast<int>(row.residence)] += row.bytes; }
  // Bytes without a row: emitters may sum whole groups of rows themselves for
  // this sink (the model states, from their bytes per parameter by residence).
  void add_bytes(int residence, uint64_t bytes) { bytes_[residence] += bytes; }
  uint64_t total(Residence r) const { return bytes_[static_cast<int>(r)]; }
  uint64_t gpu_total() const { return bytes_[0]; }
  static constexpr bool kWantsRows = false;
  static constexpr bool kResidenceOnly = true;

 private:
  std::array<uint64_t, kNumResidences> bytes_{};
};

// Only the byte sum, for sizing one layer's tensors.
class ByteCountSink {
 public:
  void add(const MemoryRow& row) { bytes_ += row.bytes; }
  uint64_t bytes() const { return bytes_; }
  static constexpr bool kWantsRows = false;

 private:
  uint64_t bytes_ = 0;
};

class RowsSink {
 public:
  static constexpr int kMaxRows = 96;
  void add(const MemoryRow& row) {
    totals_.add(row);
    if (count_ < kMaxRows) rows_[count_++] = row;
  }
  const MemoryTotals& totals() const { return totals_.totals(); }
  uint64_t gpu_total() const { return totals_.gpu_total(); }
  int size() const { return count_; }
  const MemoryRow& operator[](int i) const { return rows_[i]; }
  static constexpr bool kWantsRows = true;

 private:
  TotalsSink totals_;
  std::array<MemoryRow, kMaxRows> rows_{};
  int count_ = 0;
};

// Builds a row from a shape (elements per copy), copies and dtype.
inline MemoryRow tensor_row(Component c, Residence r, Dtype d, const char* name, uint64_t d0, uint64_t d1 = 1,
                            uint64_t d2 = 1, uint64_t d3 = 1, uint64_t copies = 1) {
  MemoryRow row;
  row.component = c;
  row.residence = r;
  row.dtype = d;
  row.tensor = name;
  row.shape = {d0, d1, d2, d3};
  row.copies = copies;
  row.bytes = copies * d0 * d1 * d2 * d3 * dtype_bytes(d);
  return row;
}

}  // namespace zp
