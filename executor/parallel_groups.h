// The tensor-, data- and pipeline-parallel groups of one rank of a
// dp x tp x pp layout, in Megatron-Core's rank order (tensor-parallel ranks
// innermost, then data, then pipeline: the order the cost model's
// group_span assumes, costmodel/collectives.h): split from the world under
// MPI, loopback stand-ins for one emulated rank.
#pragma once

#include <memory>

#include "costmodel/layout.h"
#include "executor/communicator.h"

namespace zp {

struct ParallelGroups {
  int tp_rank = 0, dp_rank = 0, pp_rank = 0;
  std::unique_ptr<Communicator> tp, dp, pp;
};

// A collective call over `world` when it is an MpiCommunicator.
ParallelGroups make_parallel_groups(Communicator& world, const Layout& l);

}  // namespace zp
