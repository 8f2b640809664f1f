// evaluate_memory runs millions of times per search: it must not touch the
// heap. This binary replaces global operator new with a counting one.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "costmodel/time_model.h"
#include "test_support.h"

namespace {
std::atomic<uint64_t> g_allocations{0};
}

void* operator new(std::size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using namespace zp;

TEST_CASE("evaluate_memory allocates nothing, for every framework, stage and offload") {
  for (int fw = 0; fw < 3; ++fw) {
    for (uint8_t stage = 0; stage <= 3; ++stage) {
      Layout l;
      l.tp = 2;
      l.pp = 4;
      l.dp = 2;
      l.grad_accum = 8;
      l.zero_stage = stage;
      l.framework = static_cast<Framework>(fw);
      l.recompute = stage % 2 ? Recompute::Full : Recompute::Selective;
      if (stage >= 1 && l.framework != Framework::Megatron) l.offload_optimizer = Offload::Cpu;
      test::Evaluation e = test::evaluate("llama-3.1-70b", "H100-80GB", 16, l);
      if (!e.why_not.empty()) continue;
      const MemoryInputs in = e.inputs();
      const uint64_t before = g_allocations.load();
      MemoryResult r = evaluate_memory(in);
      CHECK(g_allocations.load() == before);
      CHECK(r.gpu_bytes > 0);
    }
  }
}

TEST_CASE("the search path allocates nothing: MemoryEvaluator::evaluate_fit and TimeEvaluator") {
  const Cluster c = make_cluster(test::catalog(), "H100-80GB", "", 64);
  const Network net = make_network(c, Catalog::builtin_data_dir());
  const ModelShape m = make_shape(test::catalog().resolve_model("mixtral-8x7b"));
  const ClusterShape cs = make_cluster_shape(c);
  MemoryEvaluator memory;
  TimeEvaluator timer;
  int checked = 0;
  for (uint32_t pp : {1u, 2u, 4u}) {
    for (uint8_t stage = 0; stage <= 3; ++stage) {
      Layout l;
      l.tp = 2;
      l.pp = pp;
      l.dp = 64 / (2 * pp);
      l.ep = 4;
      l.grad_accum = 8;
      l.zero_stage = stage;
      l.recompute = Recompute::Selective;
      l.sequence_parallel = true;
      if (!check_layout(m, l, cs, 64).empty()) continue;
      const MemoryOptions o = resolve_options({}, l);
      const uint64_t before = g_allocations.load();
      const MemoryFit f = memory.evaluate_fit({m, l, cs, o});
      const StepTime t = timer.evaluate({m, l, c.gpu, c.node, net});
      CHECK(g_allocations.load() == before);
      CHECK(f.gpu_bytes > 0);
      CHECK(t.total_s > 0);
      ++checked;
    }
  }
  CHECK(checked >= 6);
}
