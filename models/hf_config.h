// Hugging Face config.json -> ModelSpec for the decoder-only model types
// zeroplan supports: llama, mistral, mixtral, qwen2, gpt2, gpt_neox, bloom.
// Field names and defaults follow transformers' configuration_<type>.py.
// Unknown fields are ignored (configs carry many that do not change sizes);
// missing size fields and unsupported model types are InputErrors.
#pragma once

#include <string>

#include "models/json_file.h"
#include "models/model_spec.h"

namespace zp {

// `origin` is the file path, used in messages and as the model's source.
ModelSpec model_from_hf_config(const Json& config, const std::string& origin);

// True when `j` looks like a Hugging Face config (has "model_type").
bool is_hf_config(const Json& j);

}  // namespace zp
