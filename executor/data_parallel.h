// Data parallelism with ZeRO stages 0-2 over a Communicator, for the flat
// fp32 parameters of a GptModel (issue 6):
//  - stage 0: gradients all-reduced (2 Psi), every rank runs AdamW on all
//    parameters and keeps all optimizer states;
//  - stage 1 and 2: gradients reduce-scattered, each rank runs AdamW on its
//    partition (ceil(Psi / dp) elements, the tail padded) and keeps only that
//    partition's moments, then the parameters are all-gathered (2 Psi).
//    With one micro-batch per step, stages 1 and 2 move the same data; they
//    differ in which gradient buffer persists across accumulation steps.
// Stage 3 (parameters partitioned and gathered layer by layer) is not built
// yet. Each rank computes the mean loss of its own slice of the batch; the
// reported loss is the mean over ranks, as a single rank on the whole batch
// would compute it.
#pragma once

#include <cstdint>
#include <vector>

#include "executor/checkpoint.h"
#include "executor/communicator.h"
#include "executor/gpt_model.h"
#include "executor/llama_model.h"

namespace zp {

struct AdamConfig {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.0f;
};

// Model: GptModel<float> or LlamaModel<float> (flat params and grads,
// forward_backward).
template <class Model>
class DataParallelTrainer {
 public:
  DataParallelTrainer(Model& model, Communicator& comm, int zero_stage, AdamConfig adam);
  // One step on this rank's slice (B_local sequences of T tokens); returns the global mean loss.
  float step(const int* tokens, const int* targets, int B_local, int Tn);
  size_t optimizer_state_elements() const { return m_.size() + v_.size(); }
  // Wall time of the last step's phases.
  struct Phases {
    double forward_s = 0, backward_s = 0, gradient_sync_s = 0, optimizer_s = 0, parameter_gather_s = 0;
  };
  const Phases& last_phases() const { return phases_; }
  // What this rank holds (its moments are its partition's for stage >= 1),
  // for checkpoints; restore() takes back what state() gave.
  CheckpointState state() const;
  void restore(const CheckpointState& s);

 private:
  Model& model_;
  Communicator& comm_;
  int stage_;
  AdamConfig adam_;
  int steps_ = 0;
  Phases phases_;
  size_t shard_ = 0;  // partition size (stage >= 1)
  std::vector<float> m_, v_, padded_, grad_shard_;
};

extern template class DataParallelTrainer<GptModel<float>>;
extern template class DataParallelTrainer<LlamaModel<float>>;

}  // namespace zp
