// Whole `fit` searches, in process (issue 5's targets: 405B on 16,384 H100s
// over the full space under 1 s on a 2-core machine; any catalog model on 8
// GPUs under 50 ms; MT-NLG 530B on 5,120 A100s well under 0.1 s; at least 10
// million layout evaluations per second per core). Counters report layouts
// enumerated per second and the number that fit.
#include <benchmark/benchmark.h>

#include "models/catalog.h"
#include "planner/planner.h"

namespace {

const zp::Catalog& catalog() {
  static const zp::Catalog c = zp::Catalog::load_dirs({ZP_BENCH_DATA});
  return c;
}

zp::PlanQuery query(const char* model, const char* gpu, uint64_t gpus, uint32_t seq, uint64_t global_batch) {
  const zp::ModelSpec m = catalog().resolve_model(model);
  zp::PlanQuery q = zp::make_plan_query(m, zp::make_cluster(catalog(), gpu, "", gpus), ZP_BENCH_DATA);
  q.space.seq_len = static_cast<uint32_t>(std::min<uint64_t>(seq, m.max_seq_len));
  q.space.global_batch = global_batch;
  return q;
}

void run(benchmark::State& state, const zp::PlanQuery& q) {
  uint64_t enumerated = 0;
  zp::PlanResult last;
  for (auto _ : state) {
    zp::PlanResult r = zp::plan(q);
    enumerated += r.enumerated;
    benchmark::DoNotOptimize(r);
    last = std::move(r);
  }
  state.counters["layouts/s"] = benchmark::Counter(static_cast<double>(enumerated), benchmark::Counter::kIsRate);
  state.counters["layouts"] = static_cast<double>(last.enumerated);
  state.counters["fit"] = static_cast<double>(last.fitting);
  state.counters["timed"] = static_cast<double>(last.timed);
}

void BM_Fit_Llama405B_16384xH100_free_batch(benchmark::State& state) {
  static const zp::PlanQuery q = query("llama-3.1-405b", "H100-80GB", 16384, 8192, 0);
  run(state, q);
}

void BM_Fit_MTNLG530B_5120xA100(benchmark::State& state) {
  static const zp::PlanQuery q = query("megatron-530b", "A100-80GB", 5120, 2048, 1920);
  run(state, q);
}

void BM_Fit_8GPUs_each_catalog_model(benchmark::State& state) {
  static std::vector<zp::PlanQuery> queries = [] {
    std::vector<zp::PlanQuery> out;
    for (const zp::ModelSpec& m : catalog().models()) out.push_back(query(m.name.c_str(), "H100-80GB", 8, 2048, 0));
    return out;
  }();
  const zp::PlanQuery& q = queries[static_cast<size_t>(state.range(0))];
  state.SetLabel(catalog().models()[static_cast<size_t>(state.range(0))].name);
  run(state, q);
}

}  // namespace

BENCHMARK(BM_Fit_Llama405B_16384xH100_free_batch)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Fit_MTNLG530B_5120xA100)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Fit_8GPUs_each_catalog_model)->DenseRange(0, 18)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
