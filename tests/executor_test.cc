// Executor I foundations: the tracking allocator, buffers allocated from the
// cost model's rows (one table, two uses), the loopback communicator.
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "counting_device.h"
#include "executor/buffer_plan.h"
#include "executor/cpu_backend.h"
#include "executor/host_gradient_drain.h"
#include "executor/loopback_communicator.h"
#include "executor/row_groups.h"
#include "test_support.h"

using namespace zp;

TEST_CASE("tracking allocator: current, peak and the composition at the peak") {
  TrackingAllocator a;
  void* w = a.allocate(1000, Component::Weights);
  void* g = a.allocate(500, Component::Gradients);
  void* x = a.allocate(4000, Component::Activations);
  CHECK(a.current_bytes() == 5500);
  a.release(x);
  void* y = a.allocate(100, Component::Logits);
  CHECK(a.current_bytes() == 1600);
  CHECK(a.peak_bytes() == 5500);
  CHECK(a.at_peak()[static_cast<int>(Component::Activations)] == 4000);
  CHECK(a.at_peak()[static_cast<int>(Component::Logits)] == 0);
  CHECK(a.current_bytes(Component::Weights) == 1000);
  CHECK(reinterpret_cast<uintptr_t>(w) % 64 == 0);
  a.release(w);
  a.release(g);
  a.release(y);
  CHECK(a.live_allocations() == 0);
  CHECK(a.allocate(0, Component::Weights) == nullptr);
}

TEST_CASE("one table, two uses: allocated bytes per component equal the cost model's, for many layouts") {
  int checked = 0;
  for (uint8_t stage = 0; stage <= 3; ++stage) {
    for (Recompute rc : {Recompute::None, Recompute::Selective, Recompute::Full}) {
      Layout l;
      l.dp = 4;
      l.pp = 2;
      l.grad_accum = 4;
      l.zero_stage = stage;
      l.recompute = rc;
      l.seq_len = 512;
      test::Evaluation e = test::evaluate("gpt2-124m", "H100-80GB", 8, l);
      REQUIRE(e.why_not.empty());
      for (uint32_t s = 0; s < l.pp; ++s) {
        TrackingAllocator a;
        std::vector<PlannedBuffer> buffers = allocate_stage_buffers(e.inputs(), s, a);
        RowsSink rows;
        memory_rows_for_stage(e.inputs(), s, rows);
        for (int c = 0; c < kNumComponents; ++c) {
          const Component comp = static_cast<Component>(c);
          if (is_runtime_overhead(comp)) continue;
          CAPTURE(to_string(comp));
          CHECK(a.current_bytes(comp) == rows.totals().at(Residence::Gpu, comp));
        }
        for (const PlannedBuffer& b : buffers) a.release(b.data);
        CHECK(a.current_bytes() == 0);
        ++checked;
      }
    }
  }
  CHECK(checked == 24);
}

TEST_CASE("loopback: one process stands in for a rank and moves the same bytes") {
  LoopbackCommunicator c(2, 4);
  CHECK(c.emulated());
  std::vector<float> shard = {1, 2, 3};
  std::vector<float> gathered(12, -1);
  c.all_gather(shard.data(), gathered.data(), 3);
  for (int r = 0; r < 4; ++r) CHECK(gathered[r * 3 + 1] == 2);
  std::vector<float> full = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4};
  std::vector<float> mine(3);
  LoopbackCommunicator c1(1, 4);
  c1.reduce_scatter_sum(full.data(), mine.data(), 3);
  CHECK(mine == std::vector<float>{0, 1, 1});  // elements 3..5: rank 1's slice
  std::vector<float> got(3, 7);
  c.recv(got.data(), 3, 0);
  CHECK(got == std::vector<float>{0, 0, 0});
  CHECK_THROWS(LoopbackCommunicator(4, 4));
  CHECK_THROWS(c.send(shard.data(), 3, 9));
}


TEST_CASE("loopback all-gather: every slot holds the input, in 1 + ceil(log2 size) copies") {
  for (int size = 1; size <= 65; ++size) {
    test::CountingDevice device;
    LoopbackCommunicator c(size - 1, size, device);
    const std::vector<float> shard = {1.5f, -2, 3, 4, 5};
    std::vector<float> gathered(shard.size() * static_cast<size_t>(size), -1);
    c.all_gather(shard.data(), gathered.data(), shard.size());
    CAPTURE(size);
    for (size_t i = 0; i < gathered.size(); ++i) CHECK(gathered[i] == shard[i % shard.size()]);
    int log2_ceil = 0;
    while ((1 << log2_ceil) < size) ++log2_ceil;
    CHECK(device.copies == 1 + log2_ceil);
  }
}

TEST_CASE("row groups: tokens grouped by table row, token order kept, rows outside the shard left out") {
  const std::vector<int> ids = {5, 2, 5, -1, 0, 2, 5, 7};
  const RowGroups g = group_rows(ids.size(), [&](size_t i) { return ids[i]; });
  CHECK(g.row == std::vector<int>{0, 2, 5, 7});
  CHECK(g.start == std::vector<int>{0, 1, 3, 6, 7});
  CHECK(g.order == std::vector<int>{4, 1, 5, 0, 2, 6, 7});
  // Summing each group in order reproduces the token-by-token scatter.
  std::vector<double> table(8, 0.0), grouped(8, 0.0);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= 0) table[static_cast<size_t>(ids[i])] += static_cast<double>(i) + 0.5;
  }
  for (int k = 0; k < g.groups(); ++k) {
    for (int j = g.start[k]; j < g.start[k + 1]; ++j) grouped[static_cast<size_t>(g.row[k])] += g.order[j] + 0.5;
  }
  CHECK(grouped == table);
  CHECK(group_rows(3, [](size_t) { return -1; }).groups() == 0);
}

// Offloaded gradients reach the host partition through the drain: every
// chunk added once, in the order given (one worker), so the sums are those
// of adding them directly, bit for bit; the source may be reused as soon as
// add() returns; the slots are the staging tag's bytes.
TEST_CASE("host gradient drain: each chunk added once, in order, through two staging slots") {
  TrackingAllocator host;
  CpuBackend<float> be(&host);
  const size_t partition = 1000, chunk = 100;
  std::vector<float> drained(partition, 0.0f), direct(partition, 0.0f), src(chunk);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  {
    HostGradientDrain<float> drain(host_device(), be, &host, chunk);
    CHECK(host.current_bytes(Component::OffloadStaging) == HostGradientDrain<float>::kSlots * chunk * sizeof(float));
    for (int round = 0; round < 7; ++round) {
      for (size_t at = 0; at + chunk <= partition; at += chunk / 2) {  // overlapping chunks: the order matters
        for (float& x : src) x = u(rng);
        drain.add(src.data(), chunk, drained.data() + at, nullptr);
        for (size_t i = 0; i < chunk; ++i) direct[at + i] += src[i];
        src.assign(chunk, 1e9f);  // reused at once: the drain copied it
      }
    }
    drain.wait();
    CHECK(drained == direct);
    CHECK_THROWS_AS(drain.add(src.data(), chunk + 1, drained.data(), nullptr), std::logic_error);
  }
  CHECK(host.current_bytes(Component::OffloadStaging) == 0);
}
