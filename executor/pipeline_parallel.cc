#include "executor/pipeline_parallel.h"

#include <algorithm>
#include <stdexcept>

#include "costmodel/rank_params.h"

namespace zp {

PipelineStage pipeline_stage(uint64_t layers, const Layout& l, uint32_t stage) {
  PipelineStage part;
  for (uint32_t s = 0; s < stage; ++s) part.first_layer += static_cast<int>(layers_on_stage(layers, l, s));
  part.layers = static_cast<int>(layers_on_stage(layers, l, stage));
  part.first = stage == 0;
  part.last = stage + 1 == l.pp;
  return part;
}

template <class Model>
PipelineTrainer<Model>::PipelineTrainer(Model& stage, Communicator& comm, PipeSchedule schedule, AdamConfig adam,
                                        TrainerMemory memory, Communicator* data_parallel, int zero_stage)
    : model_(stage),
      comm_(comm),
      dp_(data_parallel),
      optimizer_(stage, data_parallel ? *data_parallel : alone_, zero_stage, adam, memory),
      schedule_(schedule),
      device_(memory.device),
      timer_(stage.backend().device()) {
  const PipelineStage& s = stage.stage();
  if (s.first != (comm.rank() == 0) || s.last != (comm.rank() + 1 == comm.size())) {
    throw std::runtime_error("pipeline: rank " + std::to_string(comm.rank()) + " of " + std::to_string(comm.size()) +
                             " holds the wrong stage (first/last)");
  }
  input_ = make_buffer<T>(device_, Component::Buckets);
  output_grad_ = make_buffer<T>(device_, Component::Buckets);
  tied_ = make_buffer<T>(device_, Component::Buckets);
  // The tied embedding's gradient is summed between the end stages once per
  // step, before the data-parallel reduction: under ZeRO-2/3 it stays out of
  // the per-micro-batch reductions until then.
  optimizer_.hold_unit(stage.tied_embedding_unit());
}

template <class Model>
void PipelineTrainer<Model>::forward(int k, const int* tokens, const int* targets, int micro_batch, int Tn) {
  const size_t start = timer_.mark();
  const size_t per_micro = static_cast<size_t>(micro_batch) * Tn;
  const PipelineStage& s = model_.stage();
  loss_sum_ += model_.stage_forward(k, tokens + k * per_micro, targets + k * per_micro, s.first ? nullptr : input_.data(),
                                    micro_batch, Tn);
  ++in_flight_;
  max_in_flight_ = std::max(max_in_flight_, in_flight_);
  if (device_) {
    peak_activation_bytes_ = std::max(peak_activation_bytes_, device_->current_bytes(Component::Activations) +
                                                                  device_->current_bytes(Component::RecomputeWorkspace) +
                                                                  device_->current_bytes(Component::Logits));
  }
  timer_.add(phases_.forward_s, start);
}

template <class Model>
void PipelineTrainer<Model>::backward(int k, int micro_batch, int Tn) {
  const size_t start = timer_.mark();
  const PipelineStage& s = model_.stage();
  model_.stage_backward(k, s.last ? nullptr : output_grad_.data(), micro_batch, Tn);
  model_.free_activations(k);
  --in_flight_;
  timer_.add(phases_.backward_s, start);
}

template <class Model>
float PipelineTrainer<Model>::step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches) {
  const int p = comm_.size(), stage = comm_.rank(), m = micro_batches;
  const PipelineStage& s = model_.stage();
  const size_t n = model_.stage_io_elements(micro_batch, Tn);
  // What comes from the stage before, and the gradient from the stage after
  // (neither on an end of the pipeline, nor without one: tensor parallelism alone).
  input_.assign(s.first ? 0 : n, T(0));
  output_grad_.assign(s.last ? 0 : n, T(0));
  const size_t step_start = timer_.mark();
  phases_ = Phases{};
  step_s_ = 0;
  optimizer_.begin_step();
  loss_sum_ = 0;
  // Point to point with the neighbours (nothing before the first stage or after the last).
  auto recv_forward = [&] { if (!s.first) comm_.recv(input_.data(), n, stage - 1); };
  auto send_forward = [&](int k) {
    if (s.last) return;
    comm_.send(model_.stage_output(k), n, stage + 1);
    model_.output_sent(k);
  };
  auto recv_backward = [&] { if (!s.last) comm_.recv(output_grad_.data(), n, stage + 1); };
  auto send_backward = [&] { if (!s.first) comm_.send(model_.input_gradient(), n, stage - 1); };
  if (schedule_ == PipeSchedule::GPipe && p > 1) {
    for (int k = 0; k < m; ++k) {
      recv_forward();
      forward(k, tokens, targets, micro_batch, Tn);
      send_forward(k);
    }
    for (int k = 0; k < m; ++k) {
      recv_backward();
      backward(k, micro_batch, Tn);
      send_backward();
    }
  } else {
    // 1F1B in Megatron-LM's order (core/pipeline_parallel/schedules.py,
    // forward_backward_pipelining_without_interleaving): in the steady state
    // a stage sends its output while it receives the gradient, and sends the
    // gradient while it receives the next input, each pair as one call. With
    // one stage there is no pipeline to fill: each micro-batch's backward
    // follows its forward whatever the schedule (the cost model's pp = 1 case).
    const int warmup = std::min(p - stage - 1, m), remaining = m - warmup;
    for (int k = 0; k < warmup; ++k) {
      recv_forward();
      forward(k, tokens, targets, micro_batch, Tn);
      send_forward(k);
    }
    if (remaining > 0) recv_forward();
    for (int i = 0; i < remaining; ++i) {
      const int k = warmup + i;
      forward(k, tokens, targets, micro_batch, Tn);
      if (!s.last) {
        comm_.send_recv(model_.stage_output(k), n, stage + 1, output_grad_.data(), n, stage + 1);
        model_.output_sent(k);
      }
      backward(i, micro_batch, Tn);
      if (i + 1 == remaining) {
        send_backward();
      } else if (!s.first) {
        comm_.send_recv(model_.input_gradient(), n, stage - 1, input_.data(), n, stage - 1);
      }
    }
    for (int k = remaining; k < m; ++k) {
      recv_backward();
      backward(k, micro_batch, Tn);
      send_backward();
    }
  }
  // The mean loss lives on the last stage; every rank reports it.
  float loss = loss_sum_ / static_cast<float>(m);
  comm_.broadcast(&loss, 1, p - 1);
  // Tied embeddings: the first and last stages add each other's gradient of
  // the shared table, so the two copies stay equal.
  const int tied_unit = model_.tied_embedding_unit();
  if (tied_unit >= 0) {
    T* tied = optimizer_.unit_gradients(tied_unit);
    const size_t table = model_.tied_embedding_size();
    tied_.assign(table, T(0));
    comm_.send_recv(tied, table, stage == 0 ? p - 1 : 0, tied_.data(), table, stage == 0 ? p - 1 : 0);
    model_.backend().accumulate(tied, tied_.data(), table);
    release_buffer(tied_);  // needed again at the next step's end only
  }
  // Across the pipelines: the mean over their slices of the batch and the
  // optimizer step (the gradients still hold the sum over the micro-batches).
  if (dp_ && dp_->size() > 1) {
    dp_->all_reduce_sum(&loss, 1);
    loss /= static_cast<float>(dp_->size());
  }
  optimizer_.apply_gradients(m);
  const auto& o = optimizer_.last_phases();
  phases_.gradient_sync_s = o.gradient_sync_s;
  phases_.optimizer_s = o.optimizer_s;
  phases_.parameter_gather_s = o.parameter_gather_s;
  // What is left of the step: the transfers with the neighbours (and the
  // waits for them: the bubble), the loss broadcast and the tied-embedding sum.
  timer_.add(step_s_, step_start);
  timer_.resolve();
  phases_.pipeline_transfer_s = step_s_ - phases_.forward_s - phases_.backward_s - phases_.gradient_sync_s -
                                phases_.optimizer_s - phases_.parameter_gather_s;
  return loss;
}

template class PipelineTrainer<GptModel<float>>;
template class PipelineTrainer<LlamaModel<float>>;
template class PipelineTrainer<GptModel<bf16>>;
template class PipelineTrainer<LlamaModel<bf16>>;

}  // namespace zp
