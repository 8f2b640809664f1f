#include "costmodel/topology.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <vector>

#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/dijkstra_shortest_paths.hpp>

namespace zp {
namespace {

struct Link {
  double bytes_per_s = 0;
  double latency_s = 0;
};

using Graph = boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS, boost::no_property, Link>;
using Vertex = boost::graph_traits<Graph>::vertex_descriptor;

struct Built {
  Graph g;
  std::vector<std::vector<Vertex>> gpus;  // [node][gpu]
  std::vector<std::vector<Vertex>> nics;  // [node][nic]
};

// Builds node 0 and 1 under leaf 0 and, when the cluster has more nodes than
// one leaf holds, one node under leaf 1: every path kind appears, and the
// graph stays small however large the cluster.
Built build(const Cluster& c, const TopologyOptions& o) {
  Built b;
  const uint64_t g = c.node.gpus_per_node;
  const uint64_t nodes = c.num_nodes() > o.nodes_per_leaf ? 3 : 2;
  const uint64_t leaves = c.num_nodes() > o.nodes_per_leaf ? 2 : 1;
  std::vector<Vertex> leaf(leaves);
  for (auto& l : leaf) l = boost::add_vertex(b.g);
  const double nic_bw = c.node.nic_bytes_per_s;
  if (leaves > 1) {
    const Vertex spine = boost::add_vertex(b.g);
    // A leaf's uplinks carry what its nodes' NICs can send, divided by the oversubscription.
    const double uplink = static_cast<double>(o.nodes_per_leaf * c.node.nics_per_node) * nic_bw / o.leaf_oversubscription;
    for (auto l : leaf) boost::add_edge(l, spine, Link{uplink, o.switch_latency_s}, b.g);
  }
  for (uint64_t n = 0; n < nodes; ++n) {
    const Vertex fabric = boost::add_vertex(b.g);  // NVSwitch, or the PCIe host bridge
    const bool nvlink = c.gpu.nvlink_bytes_per_s > 0;
    const Link gpu_link = nvlink ? Link{c.gpu.nvlink_bytes_per_s, o.nvlink_latency_s}
                                 : Link{c.gpu.pcie_bytes_per_s, o.pcie_latency_s};
    b.gpus.emplace_back();
    b.nics.emplace_back();
    for (uint64_t k = 0; k < c.node.nics_per_node; ++k) {
      const Vertex nic = boost::add_vertex(b.g);
      b.nics.back().push_back(nic);
      boost::add_edge(nic, leaf[n < 2 ? 0 : 1], Link{nic_bw, o.nic_latency_s + o.switch_latency_s}, b.g);
    }
    for (uint64_t i = 0; i < g; ++i) {
      const Vertex gpu = boost::add_vertex(b.g);
      b.gpus.back().push_back(gpu);
      boost::add_edge(gpu, fabric, gpu_link, b.g);
      // Each GPU reaches its NIC through a PCIe switch (DGX: one NIC per GPU).
      boost::add_edge(gpu, b.nics.back()[i % c.node.nics_per_node], Link{c.gpu.pcie_bytes_per_s, o.pcie_latency_s}, b.g);
    }
  }
  return b;
}

struct Path {
  double bytes_per_s = 0;
  double latency_s = 0;
  Vertex nic = 0;  // the first NIC on the path, if any
  bool through_nic = false;
};

// Widest path from `from` to `to`, and the latency along it.
Path widest(const Built& b, Vertex from, Vertex to) {
  const auto n = boost::num_vertices(b.g);
  std::vector<double> width(n, 0.0);
  std::vector<Vertex> pred(n);
  const double inf = std::numeric_limits<double>::infinity();
  boost::dijkstra_shortest_paths(
      b.g, from,
      boost::weight_map(boost::get(&Link::bytes_per_s, b.g))
          .distance_map(boost::make_iterator_property_map(width.begin(), boost::get(boost::vertex_index, b.g)))
          .predecessor_map(boost::make_iterator_property_map(pred.begin(), boost::get(boost::vertex_index, b.g)))
          .distance_compare(std::greater<double>())
          .distance_combine([](double a, double w) { return std::min(a, w); })
          .distance_inf(0.0)
          .distance_zero(inf));
  Path p;
  p.bytes_per_s = width[to];
  for (Vertex v = to; v != from; v = pred[v]) {
    const auto e = boost::edge(pred[v], v, b.g).first;
    p.latency_s += b.g[e].latency_s;
    for (const auto& node_nics : b.nics) {
      if (std::find(node_nics.begin(), node_nics.end(), v) != node_nics.end()) {
        p.nic = v;
        p.through_nic = true;
      }
    }
  }
  return p;
}

// A GPU's share of an inter-node path: the path's bottleneck divided by the
// GPUs that share its NIC (they all send at once in a data-parallel collective).
double shared(const Built& b, const Path& p) {
  if (!p.through_nic) return p.bytes_per_s;
  uint64_t gpus_behind = 0;
  for (auto [e, end] = boost::out_edges(p.nic, b.g); e != end; ++e) {
    const Vertex other = boost::target(*e, b.g);
    for (const auto& node_gpus : b.gpus) gpus_behind += std::count(node_gpus.begin(), node_gpus.end(), other);
  }
  return p.bytes_per_s / static_cast<double>(std::max<uint64_t>(gpus_behind, 1));
}

}  // namespace

LinkSummary summarize_topology(const Cluster& c, const TopologyOptions& o) {
  const Built b = build(c, o);
  LinkSummary s;
  s.gpus_per_node = c.node.gpus_per_node;
  s.nodes_per_leaf = o.nodes_per_leaf;
  s.vertices = boost::num_vertices(b.g);
  s.edges = boost::num_edges(b.g);
  if (b.gpus[0].size() > 1) {
    const Path p = widest(b, b.gpus[0][0], b.gpus[0][1]);
    s.intra_bytes_per_s = p.bytes_per_s;
    s.intra_latency_s = p.latency_s;
  }
  // With a single node the inter-node figures describe a second node of the
  // same kind (what a larger job would see); build() always adds one.
  if (b.gpus.size() > 1) {
    const Path p = widest(b, b.gpus[0][0], b.gpus[1][0]);
    s.inter_bytes_per_s = shared(b, p);
    s.inter_latency_s = p.latency_s;
  }
  if (b.gpus.size() > 2) {
    const Path p = widest(b, b.gpus[0][0], b.gpus[2][0]);
    s.cross_leaf_bytes_per_s = shared(b, p);
    s.cross_leaf_latency_s = p.latency_s;
  } else {
    s.cross_leaf_bytes_per_s = s.inter_bytes_per_s;
    s.cross_leaf_latency_s = s.inter_latency_s;
  }
  return s;
}

}  // namespace zp
