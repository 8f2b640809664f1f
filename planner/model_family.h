// Model families for `max-model`: a shape scaling rule that turns one size
// knob (the hidden size) into a full ModelSpec, following the family's
// published shapes.
//  - gpt (GPT-3, Brown et al. 2020 Table 2.1): 128-wide heads, a 4h MLP,
//    layers = h / 128 (96 at 12288), GPT-2 vocabulary, learned positions.
//  - llama (Llama 3, arXiv 2407.21783 Table 3): 128-wide heads, 8 KV heads,
//    SwiGLU with F = 3.5h rounded to 256 (14336 at 4096, 28672 at 8192),
//    layers = h / 128 (32 at 4096, 128 at 16384; Meta's 70B is deeper, 80), vocabulary
//    128,256, untied, RMSNorm, rotary.
#pragma once

#include <string>

#include "models/model_spec.h"

namespace zp {

// Throws InputError for an unknown family. hidden is a multiple of 128.
ModelSpec family_model(const std::string& family, uint64_t hidden);

}  // namespace zp
