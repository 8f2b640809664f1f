#include "executor/parallel_groups.h"

#include <stdexcept>

#include "executor/loopback_communicator.h"

namespace zp {

ParallelGroups make_parallel_groups(Communicator& world, const Layout& l) {
  ParallelGroups g;
  const int r = world.rank(), tp = static_cast<int>(l.tp), dp = static_cast<int>(l.dp), pp = static_cast<int>(l.pp);
  g.tp_rank = r % tp;
  g.dp_rank = (r / tp) % dp;
  g.pp_rank = r / (tp * dp);
  if (!world.emulated()) {
    // Processes (MPI, or NCCL over MPI): groups of the same kind.
    g.tp = world.split(g.pp_rank * dp + g.dp_rank, g.tp_rank);
    g.dp = world.split(g.pp_rank * tp + g.tp_rank, g.dp_rank);
    g.pp = world.split(g.dp_rank * tp + g.tp_rank, g.pp_rank);
    if (!g.tp || !g.dp || !g.pp) throw std::runtime_error("parallel groups: " + world.name() + " cannot be split");
  } else {
    // An emulated rank: its groups copy where the world does (host or GPU memory).
    auto* loop = dynamic_cast<LoopbackCommunicator*>(&world);
    Device& device = loop ? loop->device() : host_device();
    g.tp = std::make_unique<LoopbackCommunicator>(g.tp_rank, tp, device);
    g.dp = std::make_unique<LoopbackCommunicator>(g.dp_rank, dp, device);
    g.pp = std::make_unique<LoopbackCommunicator>(g.pp_rank, pp, device);
  }
  return g;
}

}  // namespace zp
