// check_layout: whether a layout can run a model on a cluster at all, before
// any memory is counted. Returns "" when it can, else one sentence saying
// which constraint failed and why (the planner's --why-not uses the same
// text). It also guards the memory model's integer arithmetic: a layout
// whose byte counts could overflow 64 bits is rejected here.
#pragma once

#include <string>

#include "costmodel/cluster.h"
#include "costmodel/layout.h"
#include "costmodel/model_shape.h"

namespace zp {

std::string check_layout(const ModelShape& m, const Layout& l, const ClusterShape& c, uint64_t num_gpus);

// The two halves of check_layout, for a search that varies the model-state
// choices innermost: check_layout_shape looks at the parallel sizes, batch,
// sequence, schedule, recompute mode and precision; check_layout_states at
// the ZeRO stage, offload, checkpoint placement and framework rules. A layout
// passes check_layout exactly when it passes both.
std::string check_layout_shape(const ModelShape& m, const Layout& l, const ClusterShape& c, uint64_t num_gpus);
// Its sentences are constants: nullptr when the layout passes.
const char* check_layout_states(const Layout& l);

}  // namespace zp
