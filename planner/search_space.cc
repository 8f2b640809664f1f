#include "planner/search_space.h"

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
  std::vector<StateChoice> out;
  for (int tiled = 0; tiled < 2; ++tiled) {
    for (uint8_t zero = 0; zero <= 3; ++zero) {
      if (s.framework == Framework::Megatron && zero > 1) break;
      if (s.framework == Framework::DeepSpeed && pipeline && zero > 1) break;
      for (Offload opt : offloads) {
        if (opt != Offload::None && (!s.allow_offload || zero == 0 || s.framework == Framework::Megatron)) break;
        if (opt == Offload::Nvme && !s.allow_nvme) break;
        for (Offload par : offloads) {
          if (par != Offload::None && (zero != 3 || !s.allow_offload || !s.allow_param_offload)) break;
          if (par == Offload::Nvme && !s.allow_nvme) break;
          // ZeRO-Infinity's tiling and CPU checkpoints only matter with parameter offload.
          const int tiles = par != Offload::None ? 3 : 1;
          for (int ti = tiled; ti < (tiled ? tiles : 1); ++ti) {
            out.push_back(StateChoice{zero, opt, par, 1u << (2 * ti), ti > 0});  // tile factor 1, 4, 16
          }
        }
      }
    }
  }
  return out;
}

}  // namespace zp
