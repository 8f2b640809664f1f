// `zeroplan emit` (launch configurations for one layout) and `zeroplan
// compare` (layouts side by side).
#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "cli/layout_flags.h"
#include "cli/layout_spec.h"
#include "cli/plan_file.h"
#include "cli/plan_flags.h"
#include "costmodel/layout_check.h"
#include "models/input_error.h"
#include "planner/emit.h"

namespace zp {
namespace {

// Writes `content` to dir/name through a temporary file and a rename, so a
// crash never leaves a half-written file.
void write_file(const std::filesystem::path& dir, const EmittedFile& f) {
  const auto final_path = dir / f.name;
  const auto tmp = dir / ("." + f.name + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw InputError("--out " + dir.string() + ": cannot write " + tmp.string());
    out << f.content;
    if (!out.flush()) throw InputError("--out " + dir.string() + ": writing " + tmp.string() + " failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, final_path, ec);
  if (ec) throw InputError("--out " + dir.string() + ": cannot rename into " + final_path.string() + ": " + ec.message());
  if (f.name.size() > 3 && f.name.substr(f.name.size() - 3) == ".sh") {
    std::filesystem::permissions(final_path, std::filesystem::perms::owner_exec | std::filesystem::perms::group_exec |
                                                 std::filesystem::perms::others_exec,
                                 std::filesystem::perm_options::add, ec);
  }
}

void run_emit(const LayoutFlags& flags, const GlobalOptions& global, const std::string& format, const std::string& out_dir) {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  const Job j = make_job(flags, catalog);
  MemoryResult memory;
  const std::vector<EmittedFile> files = emit_job(format, j, &memory);
  if (!memory.fits()) std::cerr << "zeroplan: warning: this layout does not fit (see `zeroplan explain`)\n";
  if (out_dir.empty()) {
    for (const EmittedFile& f : files) {
      if (files.size() > 1) std::cout << "==> " << f.name << " <==\n";
      std::cout << f.content;
    }
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) throw InputError("--out " + out_dir + ": cannot create the folder: " + ec.message());
  for (const EmittedFile& f : files) write_file(out_dir, f);
  std::cout << "wrote";
  for (const EmittedFile& f : files) std::cout << " " << (std::filesystem::path(out_dir) / f.name).string();
  std::cout << "\n";
}

void run_compare(const PlanFlags& f, const GlobalOptions& global, const std::vector<std::string>& specs,
                 const std::vector<size_t>& ranks) {
  const Catalog catalog = Catalog::load(global.catalog_dirs);
  PlanQuery q = make_query(f, catalog, f.gpus);
  std::vector<std::pair<std::string, Layout>> layouts;
  Layout base;
  base.seq_len = q.space.seq_len;
  base.framework = q.space.framework;
  base.precision = q.space.precision;
  base.attention = q.space.attentions.front();
  for (const std::string& s : specs) layouts.emplace_back(s, parse_layout_spec(s, base, f.gpus, f.global_batch));
  if (!ranks.empty()) {
    q.top_k = *std::max_element(ranks.begin(), ranks.end());
    const PlanResult r = plan(q);
    for (size_t k : ranks) {
      if (k == 0 || k > r.top.size()) throw InputError("--ranks " + std::to_string(k) + ": the search returned " + std::to_string(r.top.size()) + " layouts");
      layouts.emplace_back("rank " + std::to_string(k), r.top[k - 1].layout);
    }
  }
  if (layouts.size() < 2) throw InputError("compare: give at least two layouts (--layout SPEC, --ranks 1,2)");
  std::vector<std::string> header = {"metric"};
  std::vector<std::vector<std::string>> cols;
  for (const auto& [name, l] : layouts) {
    header.push_back(name);
    std::vector<std::string> col;
    const std::string bad = check_layout(q.model, l, q.cluster_shape, f.gpus);
    if (!bad.empty()) {
      col = {describe(l), "invalid: " + bad};
      cols.push_back(col);
      continue;
    }
    const MemoryOptions o = resolve_options(q.options, l);
    const MemoryResult m = evaluate_memory({q.model, l, q.cluster_shape, o});
    const StepTime t = evaluate_time({q.model, l, q.cluster.gpu, q.cluster.node, q.network});
    col = {describe(l),
           m.fits() ? "yes" : "NO",
           gib(m.gpu_bytes, 1),
           gib(m.host_bytes_per_node, 0),
           fixed(t.total_s, 3) + " s",
           fixed(t.tokens_per_s, 0),
           percent(t.mfu),
           fixed(t.bubble_s, 3) + " s",
           fixed(t.tp_comm_s, 3) + " s",
           fixed(t.pp_comm_s, 3) + " s",
           fixed(t.dp_comm_s, 3) + " s",
           fixed(t.optimizer_s + t.offload_s, 3) + " s"};
    cols.push_back(col);
  }
  const std::vector<std::string> metrics = {"layout", "fits", "GPU memory", "host/node", "step", "tokens/s", "MFU",
                                            "bubble", "tp comm", "pp comm", "dp comm", "optimizer+offload"};
  TextTable t(header);
  for (size_t r = 0; r < metrics.size(); ++r) {
    std::vector<std::string> row = {metrics[r]};
    for (const auto& col : cols) row.push_back(r < col.size() ? col[r] : "");
    t.add(row);
  }
  t.print(std::cout);
}

}  // namespace

void add_emit_commands(CLI::App& app, const GlobalOptions& global) {
  static LayoutFlags flags;
  static std::string format = "zeroplan", out_dir;
  auto* emit = app.add_subcommand("emit", "Launch configuration for one layout: DeepSpeed, Megatron-LM, torchrun, zeroplan plan");
  emit->footer(
      "Example: zeroplan emit --format deepspeed --model llama-3.1-8b --gpus 8 --gpu H100-80GB --zero 3 --out run/\n"
      "         zeroplan emit --format megatron --model llama-3.1-70b --gpus 64 --gpu H100-80GB --rank 1");
  add_layout_flags(emit, flags);
  emit->add_option("--format", format, "deepspeed|megatron|torchrun|zeroplan")
      ->check(CLI::IsMember({"deepspeed", "megatron", "torchrun", "zeroplan"}));
  emit->add_option("--out", out_dir, "Folder to write the files into (default: print them)");
  emit->callback([&global]() { run_emit(flags, global, format, out_dir); });

  static PlanFlags cmp_flags;
  static std::vector<std::string> specs;
  static std::vector<size_t> ranks;
  auto* cmp = app.add_subcommand("compare", "Two or more layouts side by side");
  cmp->footer("Example: zeroplan compare --model llama-3.1-70b --gpus 64 --gpu H100-80GB --ranks 1,2 --layout tp=8,pp=2,zero=1,mb=1,ga=16");
  add_plan_flags(cmp, cmp_flags, true);
  cmp->add_option("--layout", specs, "A layout: key=value,... (dp tp pp vpp ep sp mb ga zero opt param recompute schedule tile)");
  cmp->add_option("--ranks", ranks, "Layouts of the fit search, by rank")->delimiter(',');
  cmp->callback([&global]() { run_compare(cmp_flags, global, specs, ranks); });
}

}  // namespace zp
