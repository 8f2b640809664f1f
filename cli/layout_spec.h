// A layout written on one line, for `compare --layout` and `fit --why-not`:
// comma-separated key=value pairs over a base layout, e.g.
//   "tp=8,pp=4,vpp=2,zero=1,mb=1,ga=32,sp=1,recompute=selective"
// Keys: dp tp pp vpp first last ep sp mb ga zero opt param dpu recompute
// attn (flash or materialized) schedule tile.
// Unknown keys or bad values are InputErrors naming the key.
#pragma once

#include <string>

#include "costmodel/layout.h"

namespace zp {

// dp defaults to num_gpus / (tp x pp); ga, when not given, to
// global_batch / (dp x mb) (or 1 when the global batch is free).
Layout parse_layout_spec(const std::string& spec, Layout base, uint64_t num_gpus, uint64_t global_batch);

}  // namespace zp
