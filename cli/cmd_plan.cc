// `zeroplan fit`, `min-gpus`, `max-model` and `compare`: the planner's questions.
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/layout_flags.h"
#include "cli/layout_spec.h"
#include "cli/plan_flags.h"
#include "models/input_error.h"
#include "models/param_count.h"
#include "planner/model_family.h"

namespace zp {
namespace {

std::string short_layout(const Layout& l) {
  std::string s = "dp" + std::to_string(l.dp) + " tp" + std::to_string(l.tp) + " pp" + std::to_string(l.pp);
  if (l.vpp > 1) s += "x" + std::to_string(l.vpp);
  if (l.first_stage_layers || l.last_stage_layers) {
    s += "(" + std::to_string(l.first_stage_layers) + "/" + std::to_string(l.last_stage_layers) + ")";
  }
  if (l.ep > 1) s += " ep" + std::to_string(l.ep);
  if (l.sequence_parallel) s += " sp";
  s += " z" + std::to_string(l.zero_stage);
  if (l.offload_optimizer != Offload::None) s += std::string(" opt>") + to_string(l.offload_optimizer);
  if (l.offload_param != Offload::None) s += std::string(" par>") + to_string(l.offload_param);
  if (l.tile_factor > 1) s += " tile" + std::to_string(l.tile_factor);
  if (l.attention == Attention::Materialized) s += " mat-attn";
  if (l.recompute == Recompute::Selective) s += " rc-sel";
  if (l.recompute == Recompute::Full) s += std::string(" rc-full") + (l.checkpoints_to_cpu ? "-cpu" : "");
  s += " mb" + std::to_string(l.micro_batch) + " ga" + std::to_string(l.grad_accum);
  return s;
}

std::string attention_searched(const SearchSpace& s) {
  std::string out;
  for (Attention a : s.attentions) out += (out.empty() ? "" : " or ") + std::string(to_string(a));
  return out;
}

std::string duration(double s) {
  if (s >= 86400) return fixed(s / 86400, 1) + " d";
  if (s >= 3600) return fixed(s / 3600, 1) + " h";
  if (s >= 1) return fixed(s, 2) + " s";
  return fixed(s * 1e3, 1) + " ms";
}

void print_candidates(const std::vector<Candidate>& cs, const PlanQuery& q, double tokens, bool numbered) {
  std::vector<std::string> header = {"#", "layout", "GPU mem", "of usable", "host/node", "step", "tokens/s", "MFU"};
  if (tokens > 0) header.push_back("time to train");
  TextTable t(header);
  int i = 0;
  for (const Candidate& c : cs) {
    ++i;
    std::vector<std::string> row = {numbered ? std::to_string(i) : "-", short_layout(c.layout), gib(c.memory.gpu_bytes, 1),
                                    percent(static_cast<double>(c.memory.gpu_bytes) / static_cast<double>(q.cluster_shape.gpu_memory_bytes), 0),
                                    gib(c.memory.host_bytes_per_node, 0), duration(c.time.total_s),
                                    fixed(c.time.tokens_per_s, 0), percent(c.time.mfu)};
    if (tokens > 0) row.push_back(duration(tokens / c.time.tokens_per_s));
    t.add(row);
  }
  t.print(std::cout);
}

Json candidate_json(const Candidate& c) {
  return {{"layout", describe(c.layout)}, {"gpu_bytes", c.memory.gpu_bytes}, {"host_bytes_per_node", c.memory.host_bytes_per_node},
          {"step_s", c.time.total_s}, {"tokens_per_s", c.time.tokens_per_s}, {"mfu", c.time.mfu},
          {"dp", c.layout.dp}, {"tp", c.layout.tp}, {"pp", c.layout.pp}, {"vpp", c.layout.vpp}, {"ep", c.layout.ep},
          {"zero_stage", c.layout.zero_stage}, {"micro_batch", c.layout.micro_batch}, {"grad_accum", c.layout.grad_accum},
          {"recompute", to_string(c.layout.recompute)}, {"attention", to_string(c.layout.attention)},
          {"precision", to_string(c.layout.precision)}};
}

// What would make a model fit that does not: more GPUs, a shorter sequence.
void suggest_fixes(const PlanFlags& f, const Catalog& catalog, const PlanQuery& q) {
  for (uint64_t n = q.space.num_gpus * 2; n <= q.space.num_gpus * 64; n *= 2) {
    PlanFlags g = f;
    g.top_k = 1;
    const PlanResult r = plan(make_query(g, catalog, n));
    if (!r.top.empty()) {
      std::cout << "  - " << n << " GPUs: " << short_layout(r.top.front().layout) << " fits ("
                << fixed(r.top.front().time.tokens_per_s, 0) << " tokens/s)\n";
      break;
    }
  }
  if (q.space.seq_len > 512) {
    PlanFlags g = f;
    g.top_k = 1;
    g.seq = q.space.seq_len / 2;
    const PlanResult r = plan(make_query(g, catalog, q.space.num_gpus));
    if (!r.top.empty()) std::cout << "  - --seq " << g.seq << ": " << short_layout(r.top.front().layout) << " fits\n";
  }
  if (!q.space.allow_offload) std::cout << "  - allow offload (drop --no-offload)\n";
}

int run_fit(const PlanFlags& f, const GlobalOptions& global, bool as_json, const std::string& why_not_spec = "") {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  const PlanQuery q = make_query(f, catalog, f.gpus);
  if (!why_not_spec.empty()) {
    Layout base;
    base.seq_len = q.space.seq_len;
    base.framework = q.space.framework;
    base.precision = q.space.precision;
    base.attention = q.space.attentions.front();
    const Layout l = parse_layout_spec(why_not_spec, base, f.gpus, f.global_batch);
    std::cout << describe(l) << ": " << why_not(q, l) << "\n";
    return 0;
  }
  const PlanResult r = plan_with_progress(q);
  if (as_json) {
    Json top = Json::array(), pareto = Json::array();
    for (const Candidate& c : r.top) top.push_back(candidate_json(c));
    for (const Candidate& c : r.pareto) pareto.push_back(candidate_json(c));
    Json out = {{"schema", "zeroplan.fit"}, {"version", 1}, {"model", f.model}, {"gpu", q.cluster.gpu.name},
                {"num_gpus", f.gpus}, {"seq_len", q.space.seq_len}, {"enumerated", r.enumerated}, {"valid", r.valid},
                {"fitting", r.fitting}, {"search_s", r.seconds}, {"top", top}, {"pareto", pareto}};
    if (r.has_nearest_miss) {
      out["nearest_miss"] = candidate_json(r.nearest_miss);
      out["nearest_miss"]["short_bytes"] = r.nearest_short_bytes;
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  const ModelSpec model = catalog.resolve_model(f.model);
  std::cout << "zeroplan fit: " << model.name << " (" << with_commas(count_params(model).total) << " parameters) on "
            << f.gpus << " x " << q.cluster.gpu.name << ", seq " << q.space.seq_len
            << (f.global_batch ? ", global batch " + std::to_string(f.global_batch) : ", global batch free")
            << ", " << to_string(q.space.precision) << ", " << attention_searched(q.space) << " attention, " << f.framework
            << " accounting, " << fixed(f.reserve_pct, 0) << "% of GPU memory in reserve\n";
  std::cout << "searched " << with_commas(r.enumerated) << " layouts (" << with_commas(r.valid) << " valid, "
            << with_commas(r.fitting) << " fit) in " << duration(r.seconds) << "\n\n";
  if (r.top.empty() && r.valid == 0) {
    std::cout << "No layout satisfies the constraints";
    if (f.global_batch) {
      std::cout << ": the global batch " << f.global_batch << " must be a multiple of dp x micro-batch (1, 2, 4 or 8)"
                << " for some dp that " << f.gpus << " GPUs allow";
    }
    std::cout << ". `zeroplan fit --why-not key=value,...` says what a given layout breaks.\n";
    return 0;
  }
  if (r.top.empty()) {
    std::cout << "Nothing fits.";
    if (r.has_nearest_miss) {
      std::cout << " Nearest miss: " << short_layout(r.nearest_miss.layout) << ", short by "
                << gib(r.nearest_short_bytes) << " per GPU.\n";
    } else {
      std::cout << "\n";
    }
    std::cout << "What would make it fit:\n";
    suggest_fixes(f, catalog, q);
    return 0;
  }
  print_candidates(r.top, q, f.tokens, true);
  std::cout << "\nPareto front (memory headroom vs tokens/s):\n";
  print_candidates(r.pareto, q, 0, false);
  std::cout << "(GiB = 2^30 bytes; MFU in model FLOPs; `zeroplan explain --rank N` or `emit --rank N` for one of them)\n";
  return 0;
}

// Candidate GPU counts: 1, 2, 4, then whole nodes doubling.
std::vector<uint64_t> gpu_counts(uint64_t per_node) {
  std::vector<uint64_t> out;
  for (uint64_t n = 1; n < per_node; n *= 2) out.push_back(n);
  for (uint64_t n = per_node; n <= (uint64_t{1} << 17); n *= 2) out.push_back(n);
  return out;
}

void run_min_gpus(const PlanFlags& f, const GlobalOptions& global, double target_tokens_per_s, double days) {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  const Cluster probe = make_cluster(catalog, f.gpu, f.node, 1);
  double target = target_tokens_per_s;
  if (days > 0) {
    if (f.tokens <= 0) throw InputError("--days needs --tokens (the training budget)");
    target = std::max(target, f.tokens / (days * 86400));
  }
  PlanFlags g = f;
  g.top_k = 1;
  bool found_any = false;
  for (uint64_t n : gpu_counts(probe.node.gpus_per_node)) {
    const PlanResult r = plan(make_query(g, catalog, n));
    if (r.top.empty()) continue;
    const Candidate& best = r.top.front();
    const uint64_t nodes = (n + probe.node.gpus_per_node - 1) / probe.node.gpus_per_node;
    if (!found_any) {
      std::cout << "fewest GPUs that train " << f.model << ": " << n << " (" << nodes << " node" << (nodes > 1 ? "s" : "")
                << "), " << short_layout(best.layout) << ", " << fixed(best.time.tokens_per_s, 0) << " tokens/s\n";
      found_any = true;
      if (target <= 0) return;
    }
    if (best.time.tokens_per_s >= target) {
      std::cout << "fewest GPUs reaching " << fixed(target, 0) << " tokens/s: " << n << " (" << nodes << " nodes), "
                << short_layout(best.layout) << ", " << fixed(best.time.tokens_per_s, 0) << " tokens/s";
      if (f.tokens > 0) std::cout << ", " << duration(f.tokens / best.time.tokens_per_s) << " for the budget";
      std::cout << "\n";
      return;
    }
  }
  if (!found_any) {
    std::cout << f.model << " does not train on up to " << gpu_counts(probe.node.gpus_per_node).back() << " " << f.gpu << " GPUs\n";
  } else {
    std::cout << "no GPU count up to " << gpu_counts(probe.node.gpus_per_node).back() << " reaches " << fixed(target, 0)
              << " tokens/s\n";
  }
}

// The largest hidden size of the family that trains, by bisection over
// multiples of 128 (the family's head width).
void run_max_model(const PlanFlags& f, const GlobalOptions& global, const std::string& family) {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  // Three regimes: nothing offloaded; the optimizer on the CPU (ZeRO-Offload,
  // parameters stay on the GPU); everything offloadable, NVMe included
  // (ZeRO-Infinity).
  struct Regime {
    const char* name;
    bool offload, param_offload, nvme;
  } regimes[] = {{"without offload", false, false, false},
                 {"optimizer offload to CPU (ZeRO-Offload)", true, false, false},
                 {"parameter and optimizer offload, NVMe included (ZeRO-Infinity)", true, true, true}};
  for (const Regime& regime : regimes) {
    if (regime.offload && f.no_offload) continue;
    PlanFlags g = f;
    g.top_k = 1;
    g.no_offload = !regime.offload;
    g.no_nvme = !regime.nvme || f.no_nvme;
    auto trains = [&](uint64_t units, Candidate* best) {
      const ModelSpec m = family_model(family, 128 * units);
      PlanQuery q = make_query_for_model(g, catalog, m, f.gpus);
      q.space.allow_param_offload = regime.param_offload;
      const PlanResult r = plan(q);
      if (!r.top.empty() && best) *best = r.top.front();
      return !r.top.empty();
    };
    std::cout << regime.name << ": ";
    if (!trains(4, nullptr)) {
      std::cout << "not even a " << family << " model of hidden 512 trains on " << f.gpus << " x " << f.gpu << "\n";
      continue;
    }
    uint64_t lo = 4, hi = 1024;  // hidden / 128
    while (lo + 1 < hi) {
      const uint64_t mid = (lo + hi) / 2;
      (trains(mid, nullptr) ? lo : hi) = mid;
    }
    Candidate best;
    trains(lo, &best);
    const ModelSpec m = family_model(family, 128 * lo);
    std::cout << family << " hidden " << m.hidden_size << ", " << m.num_layers << " layers = "
              << fixed(static_cast<double>(count_params(m).total) / 1e9, 1) << "B parameters; "
              << short_layout(best.layout) << ", " << fixed(best.time.tokens_per_s, 0) << " tokens/s\n";
  }
}

}  // namespace

void add_plan_commands(CLI::App& app, const GlobalOptions& global) {
  static PlanFlags fit_flags;
  static bool fit_json = false;
  static std::string why;
  auto* fit = app.add_subcommand("fit", "The layouts that fit, ranked by predicted tokens/s");
  fit->footer("Example: zeroplan fit --model llama-3.1-70b --gpus 64 --gpu H100-80GB --seq 8192 --global-batch 512 --tokens 15e12");
  add_plan_flags(fit, fit_flags, false);
  fit->add_flag("--json", fit_json, "Print JSON (schema zeroplan.fit, version 1)");
  fit->add_option("--why-not", why, "Say why this layout (key=value,...) is not in the answer");
  fit->callback([&global]() { run_fit(fit_flags, global, fit_json, why); });

  static PlanFlags min_flags;
  static double target = 0, days = 0;
  auto* min = app.add_subcommand("min-gpus", "The fewest GPUs on which a model trains (and reaches a target)");
  min->footer("Example: zeroplan min-gpus --model llama-3.1-405b --gpu H100-80GB --tokens 15e12 --days 90");
  add_plan_flags(min, min_flags, true);
  min->add_option("--target-tokens-per-s", target, "Throughput to reach")->check(CLI::Range(0.0, 1e12));
  min->add_option("--days", days, "Train --tokens within this many days")->check(CLI::Range(0.0, 1e6));
  min->callback([&global]() { run_min_gpus(min_flags, global, target, days); });

  static PlanFlags max_flags;
  static std::string family = "llama";
  auto* max = app.add_subcommand("max-model", "The largest model of a family that trains: without offload, with ZeRO-Offload, with ZeRO-Infinity");
  max->footer("Example: zeroplan max-model --gpus 1 --gpu V100-32GB --family gpt --seq 1024");
  add_plan_flags(max, max_flags, false);
  max->add_option("--family", family, "llama|gpt")->check(CLI::IsMember({"llama", "gpt"}));
  max->callback([&global]() { run_max_model(max_flags, global, family); });
}

int run_default_question(const GlobalOptions& global) {
  std::cout << "zeroplan with no arguments: what fits for Llama-3.1-8B on 8 x H100-80GB?\n"
               "(See `zeroplan --help` for the other questions.)\n\n";
  PlanFlags f;  // llama-3.1-8b, H100-80GB, 8 GPUs
  return run_fit(f, global, false);
}

}  // namespace zp
