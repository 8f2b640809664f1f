// evaluate_memory runs millions of times per search: it must not touch the
// heap. This binary replaces global operator new with a counting one.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <new>

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
