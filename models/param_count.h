// Exact parameter counts of a ModelSpec, total and per component, with the
// same conventions as the frameworks that publish them (Hugging Face
// num_parameters(): tied embeddings counted once). Per-rank counts under tensor
// and pipeline parallelism live in costmodel/; these are whole-model numbers.
#pragma once

#include <cstdint>

#include "models/model_spec.h"

namespace zp {

struct ParamCounts {
  uint64_t embedding = 0;       // V*h word embeddings
  uint64_t position = 0;        // learned position table (max_seq*h), else 0
  uint64_t embedding_norm = 0;  // BLOOM's word_embeddings_layernorm
  // One transformer layer:
  uint64_t attention = 0;       // q, k, v, o weights and biases
  uint64_t mlp = 0;             // dense MLP, or all experts of an MoE layer
  uint64_t mlp_active = 0;      // the top_k experts a token uses (== mlp if dense)
  uint64_t router = 0;          // MoE gate h*E
  uint64_t layer_norms = 0;     // the two norms of a layer
  uint64_t layer = 0;           // attention + mlp + router + layer_norms
  uint64_t num_layers = 0;
  uint64_t final_norm = 0;
  uint64_t head = 0;            // untied output layer V*h; 0 when tied
  uint64_t total = 0;
  uint64_t active = 0;          // parameters one token touches (MoE)
  // DeepSpeed's "largest layer": the largest single module with parameters of
  // its own (stage3.py model_to_params walks model.modules()).
  uint64_t largest_module = 0;
};

// Throws InputError (via checked arithmetic) if a count overflows 64 bits.
ParamCounts count_params(const ModelSpec& m);

}  // namespace zp
