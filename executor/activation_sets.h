// ActivationSets: a model's saved activations, one set per micro-batch in
// flight (what a pipeline schedule keeps), and the set shared by all of them
// under recompute (the layer's tensors under full recompute, the softmax
// output under either recompute: rebuilt in backward, one layer at a time).
// Acts is the model's struct of buffers; it has an `out` buffer for a
// pipeline stage's output until it is sent.
#pragma once

#include <memory>
#include <type_traits>
#include <vector>

#include "executor/tagged_buffer.h"

namespace zp {

template <class Acts>
struct ActivationSets {
  std::vector<std::unique_ptr<Acts>> per_micro_batch;
  // Shared between model chunks too (share_scratch): one chunk computes at
  // a time, as one micro-batch does.
  std::shared_ptr<Acts> shared = std::make_shared<Acts>();
  Acts* current = nullptr;  // micro-batch k's set, after select(k)
  Acts* layer = nullptr;    // where a layer's own tensors go
  Acts* scores = nullptr;   // where the softmax output goes

  void select(int k, bool recompute, bool selective) {
    const auto i = static_cast<size_t>(k);
    while (per_micro_batch.size() <= i) per_micro_batch.push_back(std::make_unique<Acts>());
    current = per_micro_batch[i].get();
    layer = recompute ? shared.get() : current;
    scores = recompute || selective ? shared.get() : current;
  }
  // An interleaved pipeline's chunks on one rank: one shared set for all.
  void share_scratch(const ActivationSets& with) { shared = with.shared; }
  // Micro-batch k's backward is done: its set goes.
  void free(int k) {
    if (static_cast<size_t>(k) < per_micro_batch.size()) per_micro_batch[static_cast<size_t>(k)] = std::make_unique<Acts>();
  }
  // A stage's output, sent on: it goes (Megatron-LM's deallocate_output_tensor).
  void free_output(int k) {
    release_buffer(per_micro_batch[static_cast<size_t>(k)]->out);
  }
  const Acts& of(int k) const { return *per_micro_batch[static_cast<size_t>(k)]; }
  // Every set held now (the shared one first).
  std::vector<const Acts*> all() const {
    std::vector<const Acts*> sets{shared.get()};
    for (const auto& s : per_micro_batch) sets.push_back(s.get());
    return sets;
  }
};

}  // namespace zp
