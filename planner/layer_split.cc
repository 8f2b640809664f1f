#include "planner/layer_split.h"

#include <algorithm>
#include <functional>

#include "costmodel/rank_params.h"
#include <limits>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dijkstra_shortest_paths.hpp>

namespace zp {

std::vector<uint64_t> min_max_split(const std::vector<double>& layer_cost, uint32_t stages, double first_extra,
                                    double last_extra) {
  using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::directedS, boost::no_property,
                                      boost::property<boost::edge_weight_t, double>>;
  const size_t L = layer_cost.size();
  const size_t p = stages;
  auto id = [&](size_t layers_done, size_t stages_used) { return stages_used * (L + 1) + layers_done; };
  Graph g((L + 1) * (p + 1));
  std::vector<double> prefix(L + 1, 0.0);
  for (size_t i = 0; i < L; ++i) prefix[i + 1] = prefix[i] + layer_cost[i];
  for (size_t j = 0; j < p; ++j) {
    for (size_t k = j; k < L; ++k) {
      // Stage j takes layers [k, k2); leave at least one layer per later stage.
      for (size_t k2 = k + 1; k2 + (p - j - 1) <= L; ++k2) {
        if (j + 1 == p && k2 != L) continue;
        double w = prefix[k2] - prefix[k];
        if (j == 0) w += first_extra;
        if (j + 1 == p) w += last_extra;
        boost::add_edge(id(k, j), id(k2, j + 1), w, g);
      }
    }
  }
  const size_t n = boost::num_vertices(g);
  std::vector<double> dist(n);
  std::vector<size_t> pred(n);
  boost::dijkstra_shortest_paths(
      g, id(0, 0),
      boost::distance_map(boost::make_iterator_property_map(dist.begin(), boost::get(boost::vertex_index, g)))
          .predecessor_map(boost::make_iterator_property_map(pred.begin(), boost::get(boost::vertex_index, g)))
          .distance_combine([](double a, double b) { return std::max(a, b); })
          .distance_inf(std::numeric_limits<double>::infinity())
          .distance_zero(0.0));
  std::vector<uint64_t> split;
  for (size_t v = id(L, p); v != id(0, 0); v = pred[v]) {
    const size_t u = pred[v];
    split.push_back((v % (L + 1)) - (u % (L + 1)));
  }
  std::reverse(split.begin(), split.end());
  return split;
}

namespace {

// The most loaded stage of a split given as (first, last, rest even), in cost units.
double bottleneck(uint64_t layers, uint32_t stages, uint64_t first, uint64_t last, double c, double fe, double le) {
  const uint64_t between = stages - 2;
  const double mid = between ? static_cast<double>((layers - first - last) / between) * c : 0;
  return std::max({static_cast<double>(first) * c + fe, mid, static_cast<double>(last) * c + le});
}

}  // namespace

StageSplit best_expressible_split(uint64_t layers, uint32_t stages, double layer_cost, double first_extra,
                                  double last_extra) {
  if (stages < 2 || layers < stages) return {};
  // The default split's most loaded stage.
  double default_worst = 0;
  for (uint32_t s = 0; s < stages; ++s) {
    const double extra = (s == 0 ? first_extra : 0) + (s + 1 == stages ? last_extra : 0);
    default_worst = std::max(default_worst, static_cast<double>(layers_on_stage(layers, stages, s)) * layer_cost + extra);
  }
  // Near the even share: the ends never need more than a few layers beyond it.
  const uint64_t share = (layers + stages - 1) / stages;
  const uint64_t limit = std::min<uint64_t>(layers, share + 2);
  StageSplit best;
  double best_worst = default_worst;
  for (uint64_t f = 1; f <= limit; ++f) {
    for (uint64_t g = 1; g <= limit && f + g <= layers; ++g) {
      const uint64_t between = stages - 2, rest = layers - f - g;
      if (between == 0 ? rest != 0 : (rest % between != 0 || rest < between)) continue;
      const double worst = bottleneck(layers, stages, f, g, layer_cost, first_extra, last_extra);
      // Strictly better only: ties keep the default split (or the first found, fewer layers first).
      if (worst < best_worst * (1 - 1e-12)) {
        best_worst = worst;
        best = {static_cast<uint32_t>(f), static_cast<uint32_t>(g)};
      }
    }
  }
  return best;
}

StageSplit planner_split(const ModelShape& m, uint32_t pp, Recompute recompute, uint32_t seq_len) {
  // Forward FLOPs per token (compute.h): QKV, projection, MLP, scores and values.
  const double h = static_cast<double>(m.hidden), d = static_cast<double>(m.head_dim);
  const double a = static_cast<double>(m.heads), kv = static_cast<double>(m.kv_heads);
  const double mlp = (m.mlp == MlpKind::SwiGlu ? 6.0 : 4.0) * h * static_cast<double>(m.ffn) *
                     static_cast<double>(m.top_k ? m.top_k : 1);
  const double attention = 4.0 * static_cast<double>(seq_len) * a * d;
  const double layer_forward = 2 * h * (a + 2 * kv) * d + 2 * a * d * h + mlp + attention;
  // Backward twice the forward; full recompute repeats the forward, selective the attention core.
  double layer = 3 * layer_forward;
  if (recompute == Recompute::Full) layer += layer_forward;
  if (recompute == Recompute::Selective) layer += attention;
  const double head = 3 * 2 * h * static_cast<double>(m.vocab);
  return best_expressible_split(m.layers, pp, layer, 0.0, head);
}

}  // namespace zp
