// A transcription of Megatron-LM's theoretical memory report
// (megatron/training/theoretical_memory_usage.py, report_theoretical_memory,
// NVIDIA/Megatron-LM at 00caa53a), dense GPT/Llama models without MLA or MTP.
// Used by tests and docs to compare zeroplan's `megatron` accounting with the
// number Megatron prints. Results are bytes (the Python divides by 2^20 and
// prints "MB").
#pragma once

#include <cstdint>

namespace zp {

struct MegatronArgs {
  uint64_t num_layers = 0, hidden_size = 0, ffn_hidden_size = 0, num_attention_heads = 0;
  uint64_t num_query_groups = 0;  // = heads without GQA
  uint64_t kv_channels = 0;       // head dim
  uint64_t padded_vocab_size = 0;
  uint64_t seq_length = 0, micro_batch_size = 0;
  uint64_t tensor_model_parallel_size = 1, pipeline_model_parallel_size = 1, data_parallel_size = 1;
  uint64_t virtual_pipeline_model_parallel_size = 0;  // 0 = None
  uint64_t num_microbatches = 0;                       // 0 = None
  bool swiglu = false, rmsnorm = false, untie_embeddings_and_output_weights = false;
  bool use_distributed_optimizer = false, sequence_parallel = false, selective_recompute = false;
};

struct MegatronReport {
  double weight_and_optimizer_bytes = 0;
  double activation_bytes = 0;
  double total_bytes() const { return weight_and_optimizer_bytes + activation_bytes; }
};

MegatronReport megatron_theoretical_memory(const MegatronArgs& a);

}  // namespace zp
