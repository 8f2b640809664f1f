// Layout: how one training job is laid out on a cluster. Every part of
// zeroplan shares this one struct: the memory and time cost models read it,
// the planner enumerates it, the executor runs it. It is a small trivially
// copyable value (the planner evaluates millions per second).
//
// Conventions: world = dp * tp * pp; ep carves expert-parallel groups out of
// dp (Megatron-Core's convention, ep divides dp); global batch =
// dp * micro_batch * grad_accum; grad_accum is also the number of
// micro-batches one pipeline runs per step.
#pragma once

#include <cstdint>
#include <string>

namespace zp {

enum class Offload : uint8_t { None, Cpu, Nvme };
enum class Recompute : uint8_t { None, Selective, Full };
enum class Precision : uint8_t { Bf16, Fp16, Fp32 };
enum class Optimizer : uint8_t { Adam, Sgd };
enum class Framework : uint8_t { Zeroplan, DeepSpeed, Megatron };
enum class Schedule : uint8_t { OneFOneB, GPipe, Interleaved };
enum class Attention : uint8_t { Flash, Materialized };
enum class Dropout : uint8_t { ModelDefault, On, Off };
enum class Toggle : uint8_t { Default, On, Off };

struct Layout {
  uint32_t dp = 1, tp = 1, pp = 1;
  uint32_t vpp = 1;  // virtual stages per pipeline rank (interleaved 1F1B)
  // Uneven pipeline split, Megatron-Core's --decoder-first-pipeline-num-layers
  // and --decoder-last-pipeline-num-layers: layers on the first and last
  // stage, the stages between splitting the rest evenly. 0 = the default
  // split (L/pp each, the remainder on the last stages).
  uint32_t first_stage_layers = 0, last_stage_layers = 0;
  uint32_t ep = 1;   // expert parallel (MoE), divides dp
  bool sequence_parallel = false;
  uint32_t micro_batch = 1;
  uint32_t grad_accum = 1;
  uint32_t seq_len = 2048;
  uint8_t zero_stage = 0;  // 0..3
  Offload offload_optimizer = Offload::None;
  Offload offload_param = Offload::None;  // ZeRO-3 only
  Recompute recompute = Recompute::None;
  uint32_t recompute_layers = 0;        // full recompute: layers per stage recomputed; 0 = all
  bool partition_activations = false;   // ZeRO-R: checkpoints split across the tp group
  bool checkpoints_to_cpu = false;      // ZeRO-R: checkpoints kept in host memory
  Precision precision = Precision::Bf16;
  Optimizer optimizer = Optimizer::Adam;
  bool fp32_grad_accum = false;         // gradients accumulated in fp32 (zeroplan accounting)
  Framework framework = Framework::Zeroplan;
  Schedule schedule = Schedule::OneFOneB;
  Attention attention = Attention::Flash;
  Dropout dropout = Dropout::ModelDefault;
  uint32_t tile_factor = 1;             // ZeRO-Infinity memory-centric tiling of large operators
  bool emulated = false;                // one process stands in for a rank (no NCCL memory)
  // Time model only:
  Toggle dp_overlap = Toggle::Default;  // data-parallel gradient sync overlapped with backward
  bool tp_comm_overlap = false;         // tensor-parallel collectives hidden behind GEMMs
  bool delayed_update = false;          // ZeRO-Offload's one-step delayed parameter update

  uint64_t world() const { return uint64_t{dp} * tp * pp; }
  uint64_t global_batch() const { return uint64_t{dp} * micro_batch * grad_accum; }
  uint32_t num_microbatches() const { return grad_accum; }
};

const char* to_string(Offload v);
const char* to_string(Recompute v);
const char* to_string(Precision v);
const char* to_string(Optimizer v);
const char* to_string(Framework v);
const char* to_string(Schedule v);
const char* to_string(Attention v);

// One-line description, e.g. "dp8 tp1 pp1 zero1 mb1 ga1 seq2048 bf16 ...".
std::string describe(const Layout& l);

}  // namespace zp
