#include "costmodel/megatron_report.h"

#include <algorithm>
#include <cmath>

namespace zp {
namespace {

double weight_and_optimizer(const MegatronArgs& a) {
  const double h = static_cast<double>(a.hidden_size);
  const double heads = static_cast<double>(a.num_attention_heads);
  const double query_projection_size = static_cast<double>(a.kv_channels) * heads;
  const double ratio = query_projection_size / h;
  const double gated = a.swiglu ? 1.5 : 1.0;
  const double norm_size = a.rmsnorm ? 1 : 2;
  const double self_attn = 2 * h * h * ((1 + static_cast<double>(a.num_query_groups) / heads) * ratio);
  const double layer = 2 * h * (static_cast<double>(a.ffn_hidden_size) * gated + norm_size) + self_attn;
  const double embedding = h * static_cast<double>(a.padded_vocab_size);
  const double final_norm = norm_size * h;
  const double block = layer * static_cast<double>(a.num_layers) + final_norm;
  const double pp = static_cast<double>(a.pipeline_model_parallel_size);
  const double tp = static_cast<double>(a.tensor_model_parallel_size);
  double most_loaded = (block / pp + embedding) / tp;
  if (a.untie_embeddings_and_output_weights && a.pipeline_model_parallel_size == 1) most_loaded += embedding / tp;
  const double bytes_per_param =
      a.use_distributed_optimizer ? 6 + 12.0 / static_cast<double>(a.data_parallel_size) : 18;
  return most_loaded * bytes_per_param;
}

// Shared pipeline factors of both activation functions.
double pipeline_factor(const MegatronArgs& a) {
  const double p = static_cast<double>(a.pipeline_model_parallel_size);
  if (a.virtual_pipeline_model_parallel_size > 0) {
    return 1 + (p - 1) / (p * static_cast<double>(a.virtual_pipeline_model_parallel_size));
  }
  if (a.pipeline_model_parallel_size > 1 && a.num_microbatches > 0) {
    return std::min(1.0, static_cast<double>(a.num_microbatches) / p);
  }
  return 1;
}

double activation_with_sp(const MegatronArgs& a) {
  const double s = static_cast<double>(a.seq_length), b = static_cast<double>(a.micro_batch_size);
  const double h = static_cast<double>(a.hidden_size), p = static_cast<double>(a.pipeline_model_parallel_size);
  double mem = s * b * h * (18 + 4 * (static_cast<double>(a.ffn_hidden_size) / h));
  mem *= static_cast<double>(a.num_layers);
  mem += 8 * s * b * p;
  mem += s * b * h * p;
  mem *= pipeline_factor(a);
  if (a.pipeline_model_parallel_size == 1) {
    mem += s * b * h * 4 * (1 + static_cast<double>(a.padded_vocab_size) / h);
  }
  return mem / static_cast<double>(a.tensor_model_parallel_size);
}

double activation_without_sp(const MegatronArgs& a) {
  const double s = static_cast<double>(a.seq_length), b = static_cast<double>(a.micro_batch_size);
  const double h = static_cast<double>(a.hidden_size), p = static_cast<double>(a.pipeline_model_parallel_size);
  const double t = static_cast<double>(a.tensor_model_parallel_size);
  double mem = s * b * h * (10 + 24 / t) * static_cast<double>(a.num_layers);
  mem += 8 * s * b * p;
  mem += s * b * h * p;
  mem *= pipeline_factor(a);
  if (a.pipeline_model_parallel_size == 1) {
    const double logits = s * b * static_cast<double>(a.padded_vocab_size) / t;
    mem += (logits + s * b * h) * 2;
  }
  return mem * 1.05;
}

}  // namespace

MegatronReport megatron_theoretical_memory(const MegatronArgs& a) {
  MegatronReport r;
  r.weight_and_optimizer_bytes = weight_and_optimizer(a);
  r.activation_bytes = (a.sequence_parallel && a.selective_recompute) ? activation_with_sp(a) : activation_without_sp(a);
  return r;
}

}  // namespace zp
