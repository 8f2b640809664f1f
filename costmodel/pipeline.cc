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
      // Passes of chunk c among the first `units`: p of each whole group of p v, and its share of the rest.
      auto passes_of = [&](uint64_t c) {
        const uint64_t group = p * v, rest = f.units % group;
        return f.units / group * p + std::min(p, rest > c * p ? rest - c * p : 0);
      };
      f.first_chunk_microbatches = passes_of(0);
      f.last_chunk_microbatches = passes_of(v - 1);
      return f;
    }
  }
  f.first_chunk_microbatches = f.last_chunk_microbatches = f.units;
  return f;
}

bool holds_output_over_backward(const Layout& l, uint32_t stage) {
  const uint64_t p = l.pp, m = l.num_microbatches(), v = l.vpp;
  if (l.schedule != Schedule::Interleaved || p == 1 || v == 1) return false;
  const uint64_t warmup = 2 * (p - stage - 1) + (v - 1) * p;
  if (warmup >= m * v) return false;
  return stage + 1 < p;
}

}  // namespace zp
