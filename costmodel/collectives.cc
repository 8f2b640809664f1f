#include "costmodel/collectives.h"

#include <algorithm>
#include <cmath>

namespace zp {
namespace {

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

struct Links {
  double intra_bw, intra_lat, inter_bw, inter_lat;
};

Links links_for(const GroupSpan& g, const Network& net) {
  const LinkSummary& l = net.links;
  const double inter_bw = g.cross_leaf ? l.cross_leaf_bytes_per_s : l.inter_bytes_per_s;
  const double inter_lat = g.cross_leaf ? l.cross_leaf_latency_s : l.inter_latency_s;
  return {l.intra_bytes_per_s * net.eff.nvlink_busbw_fraction, l.intra_latency_s + net.eff.nvlink_latency_s,
          inter_bw * net.eff.nic_busbw_fraction, inter_lat + net.eff.nic_latency_s};
}

// One reduce-scatter or all-gather phase: `factor` = 1; an all-reduce is two.
double phase_s(double bytes, const GroupSpan& g, const Network& net, double phases) {
  if (g.size <= 1 || bytes <= 0) return 0;
  const Links k = links_for(g, net);
  const double m = static_cast<double>(g.per_node), n = static_cast<double>(g.nodes);
  double t = 0;
  if (g.per_node > 1) t += phases * ((m - 1) / m * bytes / k.intra_bw + (m - 1) * k.intra_lat);
  if (g.nodes > 1) {
    const double data = bytes / m;  // each rail carries 1/m of the buffer
    const double ring_lat = phases * (n - 1) * k.inter_lat;
    const double tree_lat = 2.0 * std::log2(n) * k.inter_lat;
    t += phases * (n - 1) / n * data / k.inter_bw + std::min(ring_lat, tree_lat);
  }
  return t;
}

}  // namespace

GroupSpan group_span(const Layout& l, Dimension d, const LinkSummary& links) {
  const uint64_t g = links.gpus_per_node;
  uint64_t size = 1, stride = 1;
  switch (d) {
    case Dimension::Tensor: size = l.tp; stride = 1; break;
    case Dimension::Expert: size = l.ep; stride = l.tp; break;
    case Dimension::Data: size = l.dp; stride = l.tp; break;
    case Dimension::ExpertData: size = l.dp / l.ep; stride = uint64_t{l.tp} * l.ep; break;
    case Dimension::Pipeline: size = l.pp; stride = uint64_t{l.tp} * l.dp; break;
  }
  GroupSpan s;
  s.size = size;
  s.per_node = stride >= g ? 1 : std::min(size, g / stride);
  s.nodes = ceil_div(size, s.per_node);
  const uint64_t node_stride = stride >= g ? stride / g : 1;
  s.cross_leaf = (s.nodes - 1) * node_stride + 1 > links.nodes_per_leaf;
  return s;
}

Network make_network(const Cluster& c, const std::string& data_dir) {
  return Network{summarize_topology(c), load_efficiency(data_dir, c.gpu.name)};
}

double all_reduce_s(double bytes, const GroupSpan& g, const Network& net) { return phase_s(bytes, g, net, 2); }
double all_gather_s(double bytes, const GroupSpan& g, const Network& net) { return phase_s(bytes, g, net, 1); }
double reduce_scatter_s(double bytes, const GroupSpan& g, const Network& net) { return phase_s(bytes, g, net, 1); }

double all_to_all_s(double bytes, const GroupSpan& g, const Network& net) {
  if (g.size <= 1 || bytes <= 0) return 0;
  const Links k = links_for(g, net);
  const double size = static_cast<double>(g.size), m = static_cast<double>(g.per_node);
  // (m-1)/size of the buffer stays inside the node, (size-m)/size leaves it.
  const double intra = (m - 1) / size * bytes / k.intra_bw;
  const double inter = (size - m) / size * bytes / k.inter_bw;
  return std::max(intra, inter) + (size - 1) * (g.nodes > 1 ? k.inter_lat : k.intra_lat) / size * 2;
}

double p2p_s(double bytes, bool inter_node, const Network& net) {
  if (bytes <= 0) return 0;
  const GroupSpan g{2, inter_node ? 1u : 2u, inter_node ? 2u : 1u, false};
  const Links k = links_for(g, net);
  return inter_node ? bytes / k.inter_bw + k.inter_lat : bytes / k.intra_bw + k.intra_lat;
}

}  // namespace zp
