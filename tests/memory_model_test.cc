// The whole memory model: pipeline in-flight counts, the most loaded stage,
// per-rank parameters, ZeRO-3 working set, offload to host/NVMe per node,
// runtime overheads, and the property tests issue 3 asks for.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "costmodel/pipeline.h"
#include "costmodel/rank_params.h"
#include "test_support.h"

using namespace zp;

TEST_CASE("in-flight micro-batches: GPipe m, 1F1B p - i, interleaved 2(p-i-1) + (v-1)p + 1") {
  Layout l;
  l.pp = 4;
  l.grad_accum = 8;
  l.schedule = Schedule::OneFOneB;
  for (uint32_t i = 0; i < 4; ++i) CHECK(in_flight(l, 8, 32, i).units == 4 - i);
  l.grad_accum = 2;  // fewer micro-batches than stages
  CHECK(in_flight(l, 8, 32, 0).units == 2);
  l.schedule = Schedule::GPipe;
  l.grad_accum = 8;
  CHECK(in_flight(l, 8, 32, 3).units == 8);
  l.schedule = Schedule::Interleaved;
  l.vpp = 2;
  const InFlight f = in_flight(l, 8, 32, 0);
  CHECK(f.units == 2 * 3 + 1 * 4 + 1);  // 11 chunks
  CHECK(f.layers_per_unit == 4);        // 32 / (4 * 2)
  // Rank 0 holds L(1 + (p-1)/(p v)) layers' worth: 32 * (1 + 3/8) = 44.
  CHECK(f.units * f.layers_per_unit == 44);
  Layout single;
  single.grad_accum = 16;
  CHECK(in_flight(single, 32, 32, 0).units == 1);  // pp = 1: accumulation is sequential
}

TEST_CASE("interleaved: which ranks hold a forward's output over a backward (their steady state's exchange comes after both)") {
  Layout l;
  l.pp = 4;
  l.vpp = 2;
  l.schedule = Schedule::Interleaved;
  // m = p: warm-up 2(p-r-1) + (v-1)p = 10, 8, 6, 4 of m v = 8 passes; rank 2
  // has a steady state; the last rank's peak is its last chunk's backward,
  // which holds no output (pipeline.h).
  l.grad_accum = 4;
  const bool m_is_p[] = {false, false, true, false};
  for (uint32_t r = 0; r < 4; ++r) CHECK(holds_output_over_backward(l, r) == m_is_p[r]);
  l.grad_accum = 8;  // m = 2p: every rank has a steady state
  const bool m_is_2p[] = {true, true, true, false};
  for (uint32_t r = 0; r < 4; ++r) CHECK(holds_output_over_backward(l, r) == m_is_2p[r]);
  l.schedule = Schedule::OneFOneB;  // sends each output before the next backward
  l.vpp = 1;
  for (uint32_t r = 0; r < 4; ++r) CHECK_FALSE(holds_output_over_backward(l, r));
}

TEST_CASE("layers per stage: the remainder goes to the last stages") {
  CHECK(layers_on_stage(126, 16, 0) == 7);
  CHECK(layers_on_stage(126, 16, 1) == 7);
  CHECK(layers_on_stage(126, 16, 2) == 8);
  uint64_t sum = 0;
  for (uint32_t s = 0; s < 16; ++s) sum += layers_on_stage(126, 16, s);
  CHECK(sum == 126);
}

TEST_CASE("per-rank parameters under tp add back to the model, replicated pieces counted once per rank") {
  const ModelShape m = make_shape(test::catalog().resolve_model("llama-3.1-8b"));
  Layout l;
  l.tp = 8;
  const RankParams r = rank_params(m, l);
  // Norms are the only replicated tensors of a Llama layer: 2 x 4096.
  CHECK(r.layer_dense * 8 - 7 * 2 * 4096 == m.params.layer);
  CHECK(r.embedding * 8 == m.params.embedding);
  CHECK(r.head * 8 == m.params.head);
}

TEST_CASE("the most loaded stage is found, not assumed") {
  Layout l;
  l.tp = 1;
  l.pp = 4;
  l.dp = 2;
  l.grad_accum = 8;
  l.seq_len = 2048;
  // 1F1B: stage 0 holds 4 micro-batches of activations, the last one 1; with a
  // 128K vocabulary the last stage's logits and output layer do not outweigh that.
  test::Evaluation e = test::evaluate("llama-3.1-8b", "H100-80GB", 8, l);
  REQUIRE(e.why_not.empty());
  CHECK(e.result.stage == 0);
  // With GPipe and pp = 2, every stage holds all micro-batches; the last stage
  // adds the untied output layer and the logits and is the most loaded.
  l.pp = 2;
  l.dp = 4;
  l.schedule = Schedule::GPipe;
  e = test::evaluate("llama-3.1-8b", "H100-80GB", 8, l);
  CHECK(e.result.stage == 1);
  // Stage-by-stage, the chosen stage is the maximum over all stages.
  for (uint32_t s = 0; s < l.pp; ++s) {
    RowsSink rows;
    memory_rows_for_stage(e.inputs(), s, rows);
    CHECK(rows.totals().total(Residence::Gpu) <= e.result.gpu_bytes);
  }
}

TEST_CASE("uneven splits: every stage is no more loaded than the reported one") {
  // 126 layers over 16 stages: the default split (remainder on the last
  // stages), Llama 3's published 7 / 8 x 14 / 7, and one end only.
  for (auto [first, last] : {std::pair{0u, 0u}, std::pair{7u, 7u}, std::pair{6u, 0u}, std::pair{0u, 6u}}) {
    Layout l;
    l.pp = 16;
    l.tp = 8;
    l.dp = 1;
    l.grad_accum = 32;
    l.sequence_parallel = true;
    l.recompute = Recompute::Selective;
    l.first_stage_layers = first;
    l.last_stage_layers = last;
    test::Evaluation e = test::evaluate("llama-3.1-405b", "H100-80GB", 128, l);
    CAPTURE(describe(l));
    REQUIRE(e.why_not.empty());
    uint64_t layers = 0, most = 0;
    for (uint32_t s = 0; s < l.pp; ++s) {
      RowsSink rows;
      memory_rows_for_stage(e.inputs(), s, rows);
      CAPTURE(s);
      CHECK(rows.totals().total(Residence::Gpu) <= e.result.gpu_bytes);
      most = std::max(most, rows.totals().total(Residence::Gpu));
      layers += layers_on_stage(e.shape.layers, l, s);
    }
    CHECK(most == e.result.gpu_bytes);
    CHECK(layers == 126);
  }
}

TEST_CASE("ZeRO-3 working set: two gathered layers (zeroplan), module + prefetch (DeepSpeed)") {
  Layout l;
  l.dp = 8;
  l.zero_stage = 3;
  test::Evaluation e = test::evaluate("llama-2-7b", "A100-80GB", 8, l);
  const ModelShape& m = e.shape;
  // The largest adjacent pair of units: two layers, the embedding and a
  // layer, or a layer and the final norm with the untied head (here two layers).
  CHECK(e.gpu(Component::Zero3Gathered) ==
        2 * std::max(2 * m.params.layer, m.params.embedding + m.params.layer));
  l.framework = Framework::DeepSpeed;
  e = test::evaluate("llama-2-7b", "A100-80GB", 8, l);
  CHECK(e.gpu(Component::Zero3Gathered) == 2 * (m.params.embedding + 50000000ull));
  l.tile_factor = 4;  // ZeRO-Infinity tiling shrinks the gathered module
  test::Evaluation tiled = test::evaluate("llama-2-7b", "A100-80GB", 8, l);
  CHECK(tiled.gpu(Component::Zero3Gathered) == 2 * (m.params.embedding / 4 + 50000000ull));
}

TEST_CASE("offload: host and NVMe per node, and the ZeRO-Offload 13B-on-one-V100 claim") {
  Layout l;
  l.precision = Precision::Fp16;
  l.zero_stage = 2;
  l.offload_optimizer = Offload::Cpu;
  l.micro_batch = 1;
  l.seq_len = 1024;
  l.recompute = Recompute::Full;
  // A 13B GPT (ZeRO-Offload, arXiv 2101.06840 Sec. 6: 13B on one 32 GB V100).
  ModelSpec spec = test::catalog().resolve_model("llama-2-13b");
  ModelShape m = make_shape(spec);
  Cluster c = make_cluster(test::catalog(), "V100-32GB", "dgx-2", 1);
  ClusterShape cs = make_cluster_shape(c);
  MemoryOptions o = resolve_options({}, l);
  REQUIRE(check_layout(m, l, cs, 1).empty());
  MemoryResult r = evaluate_memory({m, l, cs, o});
  CHECK(r.rank.at(Residence::Gpu, Component::Weights) == 2 * m.params.total);  // fp16 weights stay on the GPU
  CHECK(r.rank.at(Residence::Host, Component::OptimizerStates) == 8 * m.params.total);
  CHECK(r.fits_gpu);  // 26 GB of weights + checkpoints fit in 32 GiB
  CHECK(r.host_bytes_per_node == r.rank.total(Residence::Host) * 1);
  // Without offload the same model does not fit.
  l.offload_optimizer = Offload::None;
  o = resolve_options({}, l);
  CHECK_FALSE(evaluate_memory({m, l, cs, o}).fits_gpu);
  // NVMe: states land on NVMe, the host keeps swap buffers, per node = 16 GPUs.
  l.zero_stage = 3;
  l.offload_optimizer = Offload::Nvme;
  l.offload_param = Offload::Nvme;
  l.dp = 16;
  c = make_cluster(test::catalog(), "V100-32GB", "dgx-2", 16);
  cs = make_cluster_shape(c);
  o = resolve_options({}, l);
  REQUIRE(check_layout(m, l, cs, 16).empty());
  r = evaluate_memory({m, l, cs, o});
  CHECK(r.nvme_bytes_per_node == r.rank.total(Residence::Nvme) * 16);
  CHECK(r.rank.at(Residence::Host, Component::OffloadStaging) > 0);
  CHECK(r.rank.at(Residence::Gpu, Component::Weights) == 0);
}

TEST_CASE("runtime overheads: one NCCL communicator per parallel group, none when emulated") {
  Layout l;
  l.seq_len = 1024;
  l.dp = 8;
  test::Evaluation e = test::evaluate("gpt2-124m", "H100-80GB", 8, l);
  CHECK(e.gpu(Component::CudaContext) == 526ull << 20);
  CHECK(e.gpu(Component::NcclBuffers) == 580ull << 20);
  l.dp = 2;
  l.tp = 2;
  l.pp = 2;
  e = test::evaluate("gpt2-124m", "H100-80GB", 8, l);
  CHECK(e.gpu(Component::NcclBuffers) == (580ull << 20) + 2 * (388ull << 20));
  l.emulated = true;
  e = test::evaluate("gpt2-124m", "H100-80GB", 8, l);
  CHECK(e.gpu(Component::NcclBuffers) == 0);
}

TEST_CASE("property: more dp never needs more memory (stages 1-3); stage k+1 never more model states than k") {
  std::mt19937 rng(12345);
  const char* models[] = {"gpt2-355m", "llama-2-7b", "llama-3.1-8b", "mixtral-8x7b", "bloom-176b"};
  int checked = 0;
  for (int trial = 0; trial < 400; ++trial) {
    Layout l;
    const std::string model = models[rng() % 5];
    l.tp = 1u << (rng() % 3);
    l.pp = 1u << (rng() % 3);
    l.micro_batch = 1 + rng() % 4;
    l.grad_accum = l.pp * (1 + rng() % 3);
    l.seq_len = 512u << (rng() % 3);
    l.recompute = static_cast<Recompute>(rng() % 3);
    l.sequence_parallel = rng() % 2;
    l.framework = static_cast<Framework>(rng() % 2);  // zeroplan, deepspeed
    l.emulated = true;  // runtime overheads aside: NCCL groups appear at dp = 2
    const uint8_t stage = 1 + rng() % 3;
    if (l.framework == Framework::DeepSpeed && l.pp > 1 && stage > 1) continue;
    uint64_t previous = UINT64_MAX;
    for (uint32_t dp = 1; dp <= 64; dp *= 2) {
      l.dp = dp;
      l.zero_stage = stage;
      test::Evaluation e = test::evaluate(model, "H100-80GB", uint64_t{dp} * l.tp * l.pp, l);
      if (!e.why_not.empty()) break;
      CAPTURE(model);
      CAPTURE(describe(l));
      CHECK(e.result.gpu_bytes <= previous);
      previous = e.result.gpu_bytes;
      // Model states never grow with the ZeRO stage at this dp, on every
      // pipeline stage (the most loaded stage may change with the ZeRO stage).
      for (uint32_t ps = 0; ps < l.pp; ++ps) {
        uint64_t last_states = UINT64_MAX;
        for (uint8_t s = 0; s <= 3; ++s) {
          Layout k = l;
          k.zero_stage = s;
          if (k.framework == Framework::DeepSpeed && k.pp > 1 && s > 1) break;
          test::Evaluation ek = test::evaluate(model, "H100-80GB", uint64_t{dp} * l.tp * l.pp, k);
          RowsSink rows;
          memory_rows_for_stage(ek.inputs(), ps, rows);
          uint64_t states = 0;
          for (int c = 0; c < kNumComponents; ++c) {
            if (is_model_state(static_cast<Component>(c))) states += rows.totals().bytes[0][c];
          }
          CAPTURE(ps);
          CHECK(states <= last_states);
          last_states = states;
        }
      }
      ++checked;
    }
  }
  CHECK(checked > 300);
}

TEST_CASE("a layout that does not fit is reported with the shortfall") {
  Layout l;
  test::Evaluation e = test::evaluate("llama-3.1-70b", "H100-80GB", 1, l);
  CHECK_FALSE(e.result.fits_gpu);
  CHECK(e.result.gpu_bytes > e.cluster.gpu_memory_bytes);
  CHECK(e.gpu(Component::Weights) == 2 * e.shape.params.total);
}

TEST_CASE("the detailed rows and the hot path's aggregated totals agree exactly") {
  std::mt19937 rng(7);
  const char* models[] = {"gpt2-124m", "llama-3.1-8b", "mixtral-8x7b", "megatron-22b"};
  int checked = 0, interleaved_executor = 0;
  for (int trial = 0; trial < 200; ++trial) {
    Layout l;
    l.tp = 1u << (rng() % 3);
    l.pp = 1u << (rng() % 3);
    l.dp = 1u << (rng() % 3);
    l.micro_batch = 1 + rng() % 3;
    l.grad_accum = l.pp * (1 + rng() % 2);
    if (l.pp > 1 && rng() % 2) {  // interleaved: the executor's held output on some ranks
      l.schedule = Schedule::Interleaved;
      l.vpp = 2;
    }
    l.seq_len = 1024;
    l.recompute = static_cast<Recompute>(rng() % 3);
    l.partition_activations = l.recompute == Recompute::Full && rng() % 2;
    l.checkpoints_to_cpu = l.recompute == Recompute::Full && rng() % 2;
    l.recompute_layers = l.recompute == Recompute::Full ? rng() % 3 : 0;
    l.attention = static_cast<Attention>(rng() % 2);
    l.framework = static_cast<Framework>(rng() % 3);
    l.zero_stage = static_cast<uint8_t>(rng() % (l.framework == Framework::Megatron ? 2 : 4));
    if (l.framework == Framework::DeepSpeed && l.pp > 1 && l.zero_stage > 1) l.zero_stage = 1;
    const std::string model = models[rng() % 4];
    test::Evaluation e = test::evaluate(model, "H100-80GB", uint64_t{l.dp} * l.tp * l.pp, l);
    if (!e.why_not.empty()) continue;
    RowsSink rows;
    memory_rows_for_stage(e.inputs(), e.result.stage, rows);
    CAPTURE(model);
    CAPTURE(describe(l));
    for (int r = 0; r < kNumResidences; ++r) {
      for (int c = 0; c < kNumComponents; ++c) CHECK(rows.totals().bytes[r][c] == e.result.rank.bytes[r][c]);
    }
    CHECK(rows.totals().total(Residence::Gpu) == e.result.gpu_bytes);  // the fit's own sum, too
    CHECK(rows.size() < RowsSink::kMaxRows);  // nothing was dropped from the table
    ++checked;
    if (l.schedule == Schedule::Interleaved && l.framework == Framework::Zeroplan) ++interleaved_executor;
  }
  CHECK(checked > 100);
  CHECK(interleaved_executor > 5);
}

TEST_CASE("MemoryEvaluator reuses prepared parts and gives the same answers as a fresh evaluation") {
  std::mt19937 rng(99);
  MemoryEvaluator evaluator;
  const ModelShape dense = make_shape(test::catalog().resolve_model("llama-3.1-70b"));
  const ModelShape moe = make_shape(test::catalog().resolve_model("mixtral-8x7b"));
  const ClusterShape c = make_cluster_shape(make_cluster(test::catalog(), "H100-80GB", "", 64));
  int checked = 0, interleaved = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const ModelShape& m = trial % 4 == 3 ? moe : dense;
    Layout l;
    l.tp = 1u << (rng() % 4);
    l.pp = 1u << (rng() % 3);
    l.dp = static_cast<uint32_t>(64 / (l.tp * l.pp));
    l.grad_accum = 4 * (1 + rng() % 2);
    l.seq_len = 2048u << (rng() % 2);
    l.micro_batch = 1 + rng() % 2;
    l.zero_stage = static_cast<uint8_t>(rng() % 4);
    l.offload_optimizer = l.zero_stage > 0 ? static_cast<Offload>(rng() % 3) : Offload::None;
    l.offload_param = l.zero_stage == 3 ? static_cast<Offload>(rng() % 3) : Offload::None;
    l.ep = m.experts > 0 && l.dp % 2 == 0 ? 1u << (rng() % 2) : 1u;
    if (l.pp > 1 && rng() % 3 == 0) {  // an uneven split: fewer layers at one or both ends
      l.first_stage_layers = static_cast<uint32_t>(m.layers / l.pp - rng() % 2);
      l.last_stage_layers = static_cast<uint32_t>(rng() % 2 ? m.layers / l.pp - 1 : 0);
    } else if (l.pp > 1 && rng() % 2) {  // interleaved: the executor holds an output over a backward on some ranks
      l.schedule = Schedule::Interleaved;
      l.vpp = 2;
    }
    l.recompute = static_cast<Recompute>(rng() % 3);
    l.sequence_parallel = rng() % 2;
    const MemoryOptions o = resolve_options({}, l);
    if (!check_layout(m, l, c, 64).empty()) continue;
    const MemoryResult a = evaluator.evaluate({m, l, c, o});
    const MemoryResult b = evaluate_memory({m, l, c, o});
    const MemoryFit f = evaluator.evaluate_fit({m, l, c, o});
    CHECK(f.gpu_bytes == b.gpu_bytes);
    CHECK(f.stage == b.stage);
    CHECK(f.host_bytes_per_node == b.host_bytes_per_node);
    CHECK(f.nvme_bytes_per_node == b.nvme_bytes_per_node);
    CHECK(f.fits() == b.fits());
    CAPTURE(describe(l));
    CHECK(a.gpu_bytes == b.gpu_bytes);
    CHECK(a.stage == b.stage);
    CHECK(a.host_bytes_per_node == b.host_bytes_per_node);
    for (int r = 0; r < kNumResidences; ++r) {
      for (int k = 0; k < kNumComponents; ++k) CHECK(a.rank.bytes[r][k] == b.rank.bytes[r][k]);
    }
    ++checked;
    if (l.schedule == Schedule::Interleaved) ++interleaved;
  }
  CHECK(checked > 200);
  CHECK(interleaved > 20);
}

// The state side is cached per state choice across calls: a change to
// anything it depends on that leaves the shape alone (dp, the optimizer,
// fp32 gradient accumulation, the options) must still reach the answer.
TEST_CASE("MemoryEvaluator: state-side changes between calls reach the answer") {
  const ModelShape m = make_shape(test::catalog().resolve_model("llama-3.1-8b"));
  const ClusterShape c = make_cluster_shape(make_cluster(test::catalog(), "H100-80GB", "", 64));
  MemoryEvaluator evaluator;
  Layout l;
  l.tp = 2;
  l.pp = 2;
  l.grad_accum = 4;
  l.zero_stage = 1;
  auto check_fresh = [&](const MemoryOptions& o) {
    CAPTURE(describe(l));
    const MemoryFit f = evaluator.evaluate_fit({m, l, c, o});
    const MemoryResult b = evaluate_memory({m, l, c, o});
    CHECK(f.gpu_bytes == b.gpu_bytes);
    CHECK(f.host_bytes_per_node == b.host_bytes_per_node);
    return f.gpu_bytes;
  };
  const MemoryOptions o = resolve_options({}, l);
  for (uint32_t dp : {16u, 2u, 16u}) {
    l.dp = dp;
    check_fresh(o);
  }
  const uint64_t adam = check_fresh(o);
  l.optimizer = Optimizer::Sgd;
  CHECK(check_fresh(o) < adam);
  l.optimizer = Optimizer::Adam;
  l.fp32_grad_accum = true;
  CHECK(check_fresh(o) > adam);
  l.fp32_grad_accum = false;
  CHECK(check_fresh(o) == adam);
  // DeepSpeed's bucket is a row of its own (zeroplan's ZeRO-1 reduces after
  // backward, off the peak).
  l.framework = Framework::DeepSpeed;
  const MemoryOptions ds = resolve_options({}, l);
  const uint64_t ds_bytes = check_fresh(ds);
  MemoryOptions big = ds;
  big.reduce_bucket_elems = uint64_t{1} << 30;
  CHECK(check_fresh(big) > ds_bytes);
  CHECK(check_fresh(ds) == ds_bytes);
}
