// Pipeline parallelism (issue 6) over a Communicator whose ranks are the
// stages, in order: each rank holds one stage of the model (GptModel built
// with a PipelineStage), activations go forward and their gradients back
// point to point, micro-batch by micro-batch (GptModel or LlamaModel), in
// one of two schedules:
//  - GPipe (Huang et al. 2019): every forward, then every backward; all m
//    micro-batches' activations in flight on every stage;
//  - 1F1B (PipeDream-Flush, Narayanan et al. 2021 Sec. 2.2): stage s runs
//    min(p - s - 1, m) warm-up forwards, then alternates one forward and one
//    backward, then drains; at most min(p - s, m) micro-batches in flight,
//    the cost model's in_flight() (costmodel/pipeline.h);
//  - interleaved 1F1B (Narayanan et al. 2021 Sec. 2.2, Megatron-LM's
//    forward_backward_pipelining_with_interleaving): each rank holds v model
//    chunks, chunk j of rank r being virtual stage j p + r, runs
//    2 (p - r - 1) + (v - 1) p warm-up chunk-forwards (all m v where that is
//    more), then one chunk-forward and one chunk-backward at a time, in
//    groups of p micro-batches per chunk (m a multiple of p); the last rank
//    sends to the first for its next chunk, so the stages form a ring, and
//    each exchange sends and receives in both directions at once
//    (Communicator::exchange). Each chunk has its own optimizer over the data-
//    parallel group, as Megatron-LM wraps each chunk in its own DDP.
// In the 1F1B steady state a stage's send and the matching receive go
// through one send_recv call, as Megatron-LM's send_forward_recv_backward and
// send_backward_recv_forward do, so blocking transfers of any size cannot
// leave two neighbours waiting for each other. With tied embeddings the
// first and last stages sum their embedding gradients every step (Megatron-
// LM's embedding group). With a data-parallel group the gradients are then
// averaged across the pipelines with any ZeRO stage (0 and 1: once per
// step, Megatron-LM's distributed optimizer at 1; 2: a reduce-scatter after
// each micro-batch's backward; 3: parameters gathered unit by unit in every
// forward and backward); with a tensor-parallel model the three make
// Megatron-LM's 3D layout.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "costmodel/layout.h"
#include "executor/communicator.h"
#include "executor/data_parallel.h"
#include "executor/gpt_model.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"

namespace zp {

enum class PipeSchedule : uint8_t { GPipe, OneFOneB, Interleaved };

// Pipeline stage `stage` of layout `l` for a model of `layers` layers: the
// cost model's split (costmodel/rank_params.h layers_on_stage), so the
// executor and the prediction hold the same layers on every stage.
PipelineStage pipeline_stage(uint64_t layers, const Layout& l, uint32_t stage);
// Model chunk `chunk` (of l.vpp) of that stage under the interleaved
// schedule: virtual stage chunk * pp + stage, layers / (pp vpp) layers.
PipelineStage pipeline_chunk(uint64_t layers, const Layout& l, uint32_t stage, uint32_t chunk);

template <class Model>
class PipelineTrainer {
 public:
  using T = typename Model::Scalar;
  // `memory.device` (optional) is the allocator the model's buffers come
  // from: the trainer records the most activation bytes it held at once.
  // `data_parallel` (optional): the group of ranks holding the same stage
  // (and tensor-parallel rank) of other pipelines, each on its own slice of
  // the batch; across it the gradients are averaged and the optimizer
  // partitioned as DataParallelTrainer does (ZeRO 0-3, optimizer offload
  // from 1, parameter offload at 3).
  PipelineTrainer(Model& stage, Communicator& comm, PipeSchedule schedule, AdamConfig adam, TrainerMemory memory = {},
                  Communicator* data_parallel = nullptr, int zero_stage = 0);
  // Interleaved: this rank's model chunks in order (pipeline_chunk); one
  // chunk runs `schedule` as above.
  PipelineTrainer(std::vector<Model*> chunks, Communicator& comm, PipeSchedule schedule, AdamConfig adam,
                  TrainerMemory memory = {}, Communicator* data_parallel = nullptr, int zero_stage = 0);
  // One step over `micro_batches` micro-batches of `micro_batch` sequences of
  // Tn tokens (tokens and targets hold them all, one after another; the first
  // stage reads the tokens, the last the targets). Returns the mean loss on
  // every rank.
  float step(const int* tokens, const int* targets, int micro_batch, int Tn, int micro_batches);
  // The most bytes of activations, recompute workspace and logits held at
  // once during the steps so far.
  uint64_t peak_activation_bytes() const { return peak_activation_bytes_; }
  int max_in_flight() const { return max_in_flight_; }
  // The last step's phases on the device's timeline: this stage's forwards and
  // backwards, the point-to-point transfers (and waits) with its neighbours,
  // and the data-parallel trainer's gradient sync, optimizer and gather.
  struct Phases {
    double forward_s = 0, backward_s = 0, pipeline_transfer_s = 0, gradient_sync_s = 0, optimizer_s = 0,
           parameter_gather_s = 0, gradient_zeroing_s = 0;
  };
  const Phases& last_phases() const { return phases_; }
  // ZeRO-3: the most parameter bytes held gathered at once (0 otherwise).
  // (Summed over the chunks, each of which gathers its own units.)
  uint64_t zero3_peak_gathered_bytes() const;
  // What this rank holds (its stage's parameters and its optimizer states,
  // chunk after chunk), for checkpoints.
  CheckpointState state() const;
  // A delayed update in flight reaches the model (executor/data_parallel.h).
  void finish_pending();
  void restore(const CheckpointState& s);

 private:
  // Micro-batch k through chunk c, from `input` (null on the first virtual
  // stage) / from `doutput` (null on the last).
  void forward(size_t c, int k, const int* tokens, const int* targets, const T* input, int micro_batch, int Tn);
  void backward(size_t c, int k, const T* doutput, int micro_batch, int Tn);
  void one_chunk_schedule(const int* tokens, const int* targets, int micro_batch, int Tn, int m, size_t n);
  void interleaved_schedule(const int* tokens, const int* targets, int micro_batch, int Tn, int m, size_t n);
  std::vector<Model*> chunks_;
  Model& model_;  // chunks_[0]
  Communicator& comm_;
  Communicator* dp_;
  LoopbackCommunicator alone_{0, 1};
  // The data-parallel sync and the optimizer step, one per chunk.
  std::vector<std::unique_ptr<DataParallelTrainer<Model>>> optimizers_;
  PipeSchedule schedule_;
  TrackingAllocator* device_;
  int in_flight_ = 0, max_in_flight_ = 0;
  float loss_sum_ = 0;
  Phases phases_;
  PhaseTimer timer_;  // read once a step, at its end (executor/phase_timer.h)
  double step_s_ = 0;
  uint64_t peak_activation_bytes_ = 0;
  Buffer<T> tied_;
  Buffer<T> input_, output_grad_;  // what the neighbours sent: the stage input, the output's gradient
};

extern template class PipelineTrainer<GptModel<float>>;
extern template class PipelineTrainer<LlamaModel<float>>;
extern template class PipelineTrainer<GptModel<bf16>>;
extern template class PipelineTrainer<LlamaModel<bf16>>;

}  // namespace zp
