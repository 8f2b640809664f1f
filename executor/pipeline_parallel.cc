#include "executor/pipeline_parallel.h"

#include <algorithm>
#include <stdexcept>

namespace zp {

template <class Model>
PipelineTrainer<Model>::PipelineTrainer(Model& stage, Communicator& comm, PipeSchedule schedule, AdamConfig adam,
                                        TrackingAllocator* device)
    : model_(stage), comm_(comm), schedule_(schedule), adam_(adam), device_(device) {
  const PipelineStage& s = stage.stage();
  if (s.first != (comm.rank() == 0) || s.last != (comm.rank() + 1 == comm.size())) {
    throw std::runtime_error("pipeline: rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
                             " holds the wrong stage (first/last)");
  }
  m_ = make_buffer<float>(device, Component::OptimizerStates, stage.params.size());
  v_ = make_buffer<float>(device, Component::OptimizerStates, stage.params.size());
  received_ = make_buffer<float>(device, Component::Buckets);
  tied_ = make_buffer<float>(device, Component::Buckets);
}

template <class Model>
void PipelineTrainer<Model>::forward(int k, const int* tokens, const int* targets, int micro_batch, int Tn) {
  const size_t n = static_cast<size_t>(micro_batch) * Tn * static_cast<size_t>(model_.config().channels);
  const size_t per_micro = static_cast<size_t>(micro_batch) * Tn;
  const PipelineStage& s = model_.stage();
  if (!s.first) {
    received_.assign(n, 0.0f);
    comm_.recv(received_.data(), n, comm_.rank() - 1);
  }
  const float loss = model_.stage_forward(k, tokens + k * per_micro, targets + k * per_micro,
                                          s.first ? nullptr : received_.data(), micro_batch, Tn);
  loss_sum_ += loss;
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
  if (device_) {
    peak_activation_bytes_ = std::max(peak_activation_bytes_, device_->current_bytes(Component::Activations) +
                                                                  device_->current_bytes(Component::RecomputeWorkspace) +
                                                                  device_->current_bytes(Component::Logits));
  }
  if (!s.last) {
    comm_.send(model_.stage_output(k), n, comm_.rank() + 1);
    model_.output_sent(k);
  }
}

template <class Model>
void PipelineTrainer<Model>::backward(int k, int micro_batch, int Tn) {
  const size_t n = static_cast<size_t>(micro_batch) * Tn * static_cast<size_t>(model_.config().channels);
  const PipelineStage& s = model_.stage();
  if (!s.last) {
    received_.assign(n, 0.0f);
    comm_.recv(received_.data(), n, comm_.rank() + 1);
  }
  model_.stage_backward(k, s.last ? nullptr : received_.data(), micro_batch, Tn);
  if (!s.first) comm_.send(model_.input_gradient(), n, comm_.rank() - 1);
  model_.free_activations(k);
  --in_flight_;
}

template <class Model>
float PipelineTrainer<Model>::step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches) {
  const int p = comm_.size(), stage = comm_.rank(), m = micro_batches;
  std::fill(model_.grads.begin(), model_.grads.end(), 0.0f);
  loss_sum_ = 0;
  // With one stage there is no pipeline to fill: each micro-batch's backward
  // follows its forward whatever the schedule (the cost model's pp = 1 case).
  if (schedule_ == PipeSchedule::GPipe && p > 1) {
    for (int k = 0; k < m; ++k) forward(k, tokens, targets, micro_batch, Tn);
    for (int k = 0; k < m; ++k) backward(k, micro_batch, Tn);
  } else {
    const int warmup = std::min(p - stage - 1, m);
    for (int k = 0; k < warmup; ++k) forward(k, tokens, targets, micro_batch, Tn);
    for (int k = 0; k < m - warmup; ++k) {
      forward(warmup + k, tokens, targets, micro_batch, Tn);
      backward(k, micro_batch, Tn);
    }
    for (int k = m - warmup; k < m; ++k) backward(k, micro_batch, Tn);
  }
  // The mean loss lives on the last stage; every rank reports it.
  float loss = loss_sum_ / static_cast<float>(m);
  comm_.broadcast(&loss, 1, p - 1);
  const float scale = 1.0f / static_cast<float>(m);
  for (float& g : model_.grads) g *= scale;
  // Tied embeddings: the first and last stages add each other's gradient of
  // the shared table, so the two copies stay equal.
  float* tied = model_.tied_embedding_gradient();
  if (tied && p > 1) {
    const size_t n = static_cast<size_t>(model_.config().vocab) * model_.config().channels;
    tied_.assign(n, 0.0f);
    if (stage == 0) {
      comm_.send(tied, n, p - 1);
      comm_.recv(tied_.data(), n, p - 1);
    } else {
      comm_.recv(tied_.data(), n, 0);
      comm_.send(tied, n, 0);
    }
    for (size_t i = 0; i < n; ++i) tied[i] += tied_[i];
  }
  ++steps_;
  adamw_step(model_.params.data(), model_.grads.data(), m_.data(), v_.data(), model_.params.size(), steps_, adam_.lr,
             adam_.beta1, adam_.beta2, adam_.eps, adam_.weight_decay);
  return loss;
}

template class PipelineTrainer<GptModel<float>>;

}  // namespace zp
