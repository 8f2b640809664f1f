// One full memory evaluation (every component, the most loaded stage found)
// for layouts the planner meets: issue 3's target is at most 100 ns on one core.
#include <benchmark/benchmark.h>

#include <vector>

#include "costmodel/cluster.h"
#include "costmodel/memory_model.h"
#include "costmodel/time_model.h"
#include "models/catalog.h"

namespace {

struct Case {
  zp::ModelShape shape;
  zp::ClusterShape cluster;
  zp::Layout layout;
  zp::MemoryOptions options;
};

Case make_case(const char* model, const char* gpu, uint64_t gpus, zp::Layout l) {
  static const zp::Catalog catalog = zp::Catalog::load_dirs({ZP_BENCH_DATA});
  Case c;
  c.shape = zp::make_shape(catalog.resolve_model(model));
  c.cluster = zp::make_cluster_shape(zp::make_cluster(catalog, gpu, "", gpus));
  c.layout = l;
  c.options = zp::resolve_options({}, l);
  return c;
}

void run(benchmark::State& state, const Case& c) {
  const zp::MemoryInputs in{c.shape, c.layout, c.cluster, c.options};
  for (auto _ : state) {
    zp::MemoryResult r = zp::evaluate_memory(in);
    benchmark::DoNotOptimize(r);
  }
}

void BM_Memory_Llama8B_dp8_zero1(benchmark::State& state) {
  zp::Layout l;
  l.dp = 8;
  l.zero_stage = 1;
  l.micro_batch = 2;
  l.seq_len = 4096;
  static const Case c = make_case("llama-3.1-8b", "H100-80GB", 8, l);
  run(state, c);
}

void BM_Memory_Llama405B_tp8_pp16_dp128(benchmark::State& state) {
  zp::Layout l;
  l.tp = 8;
  l.pp = 16;
  l.dp = 128;
  l.zero_stage = 1;
  l.sequence_parallel = true;
  l.recompute = zp::Recompute::Selective;
  l.grad_accum = 16;
  l.seq_len = 8192;
  static const Case c = make_case("llama-3.1-405b", "H100-80GB", 16384, l);
  run(state, c);
}

void BM_Memory_Mixtral_zero3_offload_full_recompute(benchmark::State& state) {
  zp::Layout l;
  l.dp = 16;
  l.ep = 8;
  l.zero_stage = 3;
  l.offload_optimizer = zp::Offload::Nvme;
  l.offload_param = zp::Offload::Cpu;
  l.recompute = zp::Recompute::Full;
  l.framework = zp::Framework::DeepSpeed;
  static const Case c = make_case("mixtral-8x7b", "A100-80GB", 16, l);
  run(state, c);
}

// The 28 layouts of Llama-3.1-70B on 64 H100s at tp 8 that the search-path
// benchmarks walk: pp 1-8 x ZeRO 0-3 x optimizer offload.
const std::vector<zp::Layout>& search_walk() {
  static const std::vector<zp::Layout> layouts = [] {
    std::vector<zp::Layout> out;
    for (uint32_t pp : {1u, 2u, 4u, 8u}) {
      for (uint8_t stage = 0; stage <= 3; ++stage) {
        for (zp::Offload off : {zp::Offload::None, zp::Offload::Cpu}) {
          if (stage == 0 && off != zp::Offload::None) continue;
          zp::Layout l;
          l.tp = 8;
          l.pp = pp;
          l.dp = 64 / (8 * pp);
          l.grad_accum = 8;
          l.zero_stage = stage;
          l.offload_optimizer = off;
          l.sequence_parallel = true;
          l.recompute = zp::Recompute::Selective;
          l.seq_len = 8192;
          out.push_back(l);
        }
      }
    }
    return out;
  }();
  return layouts;
}

// Runs `evaluate(layout)` over the walk, one layout per iteration.
template <class F>
void walk(benchmark::State& state, F&& evaluate) {
  const std::vector<zp::Layout>& layouts = search_walk();
  size_t i = 0;
  for (auto _ : state) {
    evaluate(layouts[i]);
    i = i + 1 == layouts.size() ? 0 : i + 1;
  }
}

// The search path: one MemoryEvaluator walks dp x ZeRO stage x optimizer
// offload x pipeline depth for a fixed tp/micro-batch/sequence, as the planner's
// inner loop does. Reports the time per layout evaluated.
void BM_Memory_SearchPath_Llama70B(benchmark::State& state) {
  static const Case base = make_case("llama-3.1-70b", "H100-80GB", 64, zp::Layout{});
  const zp::MemoryOptions options = zp::resolve_options({}, search_walk()[0]);
  zp::MemoryEvaluator evaluator;
  walk(state, [&](const zp::Layout& l) {
    zp::MemoryResult r = evaluator.evaluate({base.shape, l, base.cluster, options});
    benchmark::DoNotOptimize(r);
  });
}

// The search's pruning step: the same walk as above, totals only (every row
// is still computed and summed; the per-component breakdown is not kept).
void BM_MemoryFit_SearchPath_Llama70B(benchmark::State& state) {
  static const Case base = make_case("llama-3.1-70b", "H100-80GB", 64, zp::Layout{});
  const zp::MemoryOptions options = zp::resolve_options({}, search_walk()[0]);
  zp::MemoryEvaluator evaluator;
  walk(state, [&](const zp::Layout& l) {
    zp::MemoryFit r = evaluator.evaluate_fit({base.shape, l, base.cluster, options});
    benchmark::DoNotOptimize(r);
  });
}

// Issue 4's search path: memory (totals) and step time of each layout of the
// walk, both evaluators reusing their per-shape work.
void BM_MemoryFitAndTime_SearchPath_Llama70B(benchmark::State& state) {
  static const zp::Catalog catalog = zp::Catalog::load_dirs({ZP_BENCH_DATA});
  static const Case base = make_case("llama-3.1-70b", "H100-80GB", 64, zp::Layout{});
  static const zp::Cluster cluster = zp::make_cluster(catalog, "H100-80GB", "", 64);
  static const zp::Network net = zp::make_network(cluster, ZP_BENCH_DATA);
  const zp::MemoryOptions options = zp::resolve_options({}, search_walk()[0]);
  zp::MemoryEvaluator memory;
  zp::TimeEvaluator timer;
  walk(state, [&](const zp::Layout& l) {
    zp::MemoryFit r = memory.evaluate_fit({base.shape, l, base.cluster, options});
    zp::StepTime t = timer.evaluate({base.shape, l, cluster.gpu, cluster.node, net});
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(t);
  });
}

// Issue 4's target: one full step-time evaluation, memory and time together,
// at most 300 ns on one core. The network summary and efficiency curves are
// per cluster and built once, as a search does.
void BM_MemoryAndTime_Llama70B_tp8_pp4(benchmark::State& state) {
  static const zp::Catalog catalog = zp::Catalog::load_dirs({ZP_BENCH_DATA});
  zp::Layout l;
  l.tp = 8;
  l.pp = 4;
  l.dp = 2;
  l.grad_accum = 16;
  l.zero_stage = 1;
  l.sequence_parallel = true;
  l.recompute = zp::Recompute::Selective;
  l.seq_len = 8192;
  static const Case c = make_case("llama-3.1-70b", "H100-80GB", 64, l);
  static const zp::Cluster cluster = zp::make_cluster(catalog, "H100-80GB", "", 64);
  static const zp::Network net = zp::make_network(cluster, ZP_BENCH_DATA);
  zp::MemoryEvaluator evaluator;
  for (auto _ : state) {
    zp::MemoryResult r = evaluator.evaluate({c.shape, c.layout, c.cluster, c.options});
    zp::StepTime t = zp::evaluate_time({c.shape, c.layout, cluster.gpu, cluster.node, net});
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(t);
  }
}

}  // namespace

BENCHMARK(BM_MemoryAndTime_Llama70B_tp8_pp4);
BENCHMARK(BM_MemoryFit_SearchPath_Llama70B);
BENCHMARK(BM_MemoryFitAndTime_SearchPath_Llama70B);
BENCHMARK(BM_Memory_SearchPath_Llama70B);
BENCHMARK(BM_Memory_Llama8B_dp8_zero1);
BENCHMARK(BM_Memory_Llama405B_tp8_pp16_dp128);
BENCHMARK(BM_Memory_Mixtral_zero3_offload_full_recompute);
BENCHMARK_MAIN();
