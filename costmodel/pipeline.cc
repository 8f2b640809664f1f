#include "costmodel/pipeline.h"

#include <algorithm>

namespace zp {

InFlight in_flight(const Layout& l, uint64_t layers_on_this_stage, uint64_t total_layers, uint32_t stage) {
  InFlight f;
  const uint64_t p = l.pp, m = l.num_microbatches(), v = l.vpp;
  f.layers_per_unit = layers_on_this_stage;
  if (p == 1) return f;
  switch (l.schedule) {
    case Schedule::GPipe:
      f.units = m;
      break;
    case Schedule::OneFOneB:
      f.units = std::min<uint64_t>(p - stage, m);
      break;
    case Schedule::Interleaved: {
      const uint64_t chunks = 2 * (p - stage - 1) + (v - 1) * p + 1;
      f.units = std::min(chunks, m * v);
      f.layers_per_unit = total_layers / (p * v);
      f.microbatches = std::min<uint64_t>((f.units + v - 1) / v, m);
      return f;
    }
  }
  f.microbatches = f.units;
  return f;
}

}  // namespace zp
