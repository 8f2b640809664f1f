// Shared helpers for the tests: the built-in catalog, and a one-call memory
// evaluation of a catalog model under a layout.
#pragma once

#include <string>

#include "costmodel/cluster.h"
#include "costmodel/layout_check.h"
#include "costmodel/memory_model.h"
#include "models/catalog.h"

namespace zp::test {

inline const Catalog& catalog() {
  static const Catalog c = Catalog::load_dirs({Catalog::builtin_data_dir()});
  return c;
}

struct Evaluation {
  ModelShape shape;
  ClusterShape cluster;
  Layout layout;
  MemoryOptions options;
  std::string why_not;  // check_layout's answer
  MemoryResult result;
  MemoryInputs inputs() const { return {shape, layout, cluster, options}; }
  uint64_t gpu(Component c) const { return result.rank.at(Residence::Gpu, c); }
};

inline Evaluation evaluate(const std::string& model, const std::string& gpu, uint64_t gpus, const Layout& l,
                           MemoryOptions options = {}) {
  Evaluation e;
  e.shape = make_shape(catalog().resolve_model(model));
  Cluster c = make_cluster(catalog(), gpu, "", gpus);
  e.cluster = make_cluster_shape(c);
  e.layout = l;
  e.options = resolve_options(options, l);
  e.why_not = check_layout(e.shape, l, e.cluster, gpus);
  if (e.why_not.empty()) e.result = evaluate_memory(e.inputs());
  return e;
}

}  // namespace zp::test
