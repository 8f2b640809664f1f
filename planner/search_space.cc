#include "planner/search_space.h"

#include "costmodel/layout_check.h"

namespace zp {

std::vector<uint64_t> divisors(uint64_t n, uint64_t limit) {
  std::vector<uint64_t> out;
  for (uint64_t d = 1; d <= n && d <= limit; ++d) {
    if (n % d == 0) out.push_back(d);
  }
  return out;
}

std::vector<StateChoice> state_choices(const SearchSpace& s, bool pipeline) {
  const Offload offloads[] = {Offload::None, Offload::Cpu, Offload::Nvme};
  // A probe with the fields check_layout_states reads besides the state
  // choice; full recompute admits the tiled variants' host checkpoints.
  Layout probe;
  probe.framework = s.framework;
  probe.pp = pipeline ? 2 : 1;
  probe.recompute = Recompute::Full;
  std::vector<StateChoice> out;
  for (int tiled = 0; tiled < 2; ++tiled) {
    for (uint8_t zero = 0; zero <= 3; ++zero) {
      for (Offload opt : offloads) {
        if (opt != Offload::None && !s.allow_offload) continue;
        if (opt == Offload::Nvme && !s.allow_nvme) continue;
        for (Offload par : offloads) {
          if (par != Offload::None && (!s.allow_offload || !s.allow_param_offload)) continue;
          if (par == Offload::Nvme && !s.allow_nvme) continue;
          // ZeRO-Infinity's tiling and CPU checkpoints only matter with parameter offload.
          const int tiles = par != Offload::None ? 3 : 1;
          for (int ti = tiled; ti < (tiled ? tiles : 1); ++ti) {
            const StateChoice c{zero, opt, par, 1u << (2 * ti), ti > 0};  // tile factor 1, 4, 16
            probe.zero_stage = c.zero_stage;
            probe.offload_optimizer = c.offload_optimizer;
            probe.offload_param = c.offload_param;
            probe.tile_factor = c.tile_factor;
            probe.checkpoints_to_cpu = c.tiled;
            // The framework's and ZeRO's rules, from the one place that states them.
            if (check_layout_states(probe) == nullptr) out.push_back(c);
          }
        }
      }
    }
  }
  return out;
}

}  // namespace zp
