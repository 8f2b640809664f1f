// `zeroplan params MODEL|config.json`: the exact parameter count, per component.
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "models/catalog.h"
#include "models/json_file.h"
#include "models/param_count.h"

namespace zp {
namespace {

Json params_json(const ModelSpec& m, const ParamCounts& p) {
  return {{"schema", "zeroplan.params"},
          {"version", 1},
          {"model", m.name},
          {"source", m.source},
          {"embedding", p.embedding},
          {"position_embedding", p.position},
          {"embedding_norm", p.embedding_norm},
          {"num_layers", p.num_layers},
          {"per_layer", {{"attention", p.attention}, {"mlp", p.mlp}, {"router", p.router},
                         {"norms", p.layer_norms}, {"total", p.layer}}},
          {"final_norm", p.final_norm},
          {"output_layer", p.head},
          {"tied_embeddings", m.tied_embeddings},
          {"total", p.total},
          {"active", p.active}};
}

void print_params(const ModelSpec& m, bool as_json) {
  ParamCounts p = count_params(m);
  if (as_json) {
    std::cout << params_json(m, p).dump(2) << "\n";
    return;
  }
  std::cout << "Parameters of " << m.name << " (" << m.source << ")\n\n";
  TextTable t({"component", "count", "per layer", "share"});
  auto share = [&](uint64_t n) { return percent(static_cast<double>(n) / static_cast<double>(p.total), 2); };
  auto row = [&](const std::string& name, uint64_t per_layer, uint64_t layers) {
    uint64_t n = per_layer * layers;
    t.add({name, with_commas(n), layers > 1 ? with_commas(per_layer) : "", share(n)});
  };
  row("word embedding (V x h)", p.embedding, 1);
  if (p.position) row("position embedding", p.position, 1);
  if (p.embedding_norm) row("embedding norm", p.embedding_norm, 1);
  row("attention x " + std::to_string(p.num_layers), p.attention, p.num_layers);
  row(std::string(m.is_moe() ? "experts" : "mlp") + " x " + std::to_string(p.num_layers), p.mlp, p.num_layers);
  if (p.router) row("router x " + std::to_string(p.num_layers), p.router, p.num_layers);
  row("layer norms x " + std::to_string(p.num_layers), p.layer_norms, p.num_layers);
  row("final norm", p.final_norm, 1);
  if (p.head) row("output layer (untied)", p.head, 1);
  t.rule();
  t.add({"total", with_commas(p.total), with_commas(p.layer), "100.00%"});
  if (m.is_moe()) t.add({"active per token", with_commas(p.active), "", share(p.active)});
  t.print(std::cout);
  if (m.tied_embeddings) std::cout << "(output layer tied to the word embedding: counted once)\n";
}

}  // namespace

void add_params_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("params", "Exact parameter count of a model, per component");
  cmd->footer("Example: zeroplan params llama-3.1-8b    or    zeroplan params path/to/config.json --json");
  static std::string model;
  static bool as_json = false;
  cmd->add_option("model", model, "Catalog name, zeroplan model JSON, or Hugging Face config.json (file or folder)")
      ->required();
  cmd->add_flag("--json", as_json, "Print a JSON object instead of a table");
  cmd->callback([&global]() { print_params(Catalog::load(global.catalog_dirs).resolve_model(model), as_json); });
}

}  // namespace zp
