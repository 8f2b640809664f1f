#include "planner/layer_split.h"

#include <algorithm>
#include <functional>
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

}  // namespace zp
