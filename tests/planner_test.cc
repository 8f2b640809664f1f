// The planner: published layouts are feasible and never beat the planner's
// best; nothing-fits answers carry the nearest miss; ranking and Pareto
// invariants; the min-max layer split; family scaling; the ZeRO-Offload and
// ZeRO-Infinity capacity claims.
#include <doctest/doctest.h>

#include <random>

#include "costmodel/rank_params.h"
#include "models/param_count.h"
#include "planner/layer_split.h"
#include "planner/model_family.h"
#include "planner/planner.h"
#include "test_support.h"

using namespace zp;

namespace {

PlanQuery query(const ModelSpec& model, const char* gpu, const char* node, uint64_t gpus, uint32_t seq,
                uint64_t global_batch, Framework f = Framework::Zeroplan) {
  PlanQuery q = make_plan_query(model, make_cluster(test::catalog(), gpu, node, gpus), Catalog::builtin_data_dir());
  q.space.seq_len = seq;
  q.space.global_batch = global_batch;
  q.space.framework = f;
  q.top_k = 5;
  return q;
}

// The published layout fits, and the planner's best is predicted at least as fast.
void check_published(const PlanQuery& q, Layout l) {
  l.seq_len = q.space.seq_len;
  l.framework = q.space.framework;
  l.precision = q.space.precision;
  CAPTURE(describe(l));
  REQUIRE(check_layout(q.model, l, q.cluster_shape, q.space.num_gpus).empty());
  CHECK(l.global_batch() == q.space.global_batch);
  const MemoryResult m = evaluate_memory({q.model, l, q.cluster_shape, resolve_options({}, l)});
  CHECK(m.fits());
  const StepTime t = evaluate_time({q.model, l, q.cluster.gpu, q.cluster.node, q.network});
  const PlanResult r = plan(q);
  REQUIRE(!r.top.empty());
  CHECK(r.top.front().time.tokens_per_s >= t.tokens_per_s * (1 - 1e-9));
  const std::string why = why_not(q, l);
  CHECK(why.rfind("fits", 0) == 0);
}

}  // namespace

TEST_CASE("BLOOM-176B on 384 A100-80GB: tp4 pp12 dp8 ZeRO-1 (Le Scao et al. 2022) is feasible") {
  const PlanQuery q = query(test::catalog().resolve_model("bloom-176b"), "A100-80GB", "dgx-a100", 384, 2048, 2048,
                            Framework::DeepSpeed);
  Layout l;
  l.tp = 4;
  l.pp = 12;
  l.dp = 8;
  l.zero_stage = 1;
  l.micro_batch = 2;
  l.grad_accum = 128;
  l.recompute = Recompute::Full;  // BLOOM checkpointed activations
  check_published(q, l);
}

TEST_CASE("Llama 3 405B on 16,384 H100: tp8 pp16 dp128 at 8K sequence (arXiv 2407.21783 Table 4) is feasible") {
  const PlanQuery q = query(test::catalog().resolve_model("llama-3.1-405b"), "H100-80GB", "dgx-h100", 16384, 8192, 2048);
  Layout l;
  l.tp = 8;
  l.pp = 16;
  l.dp = 128;
  l.zero_stage = 1;
  l.micro_batch = 1;
  l.grad_accum = 16;
  l.sequence_parallel = true;
  check_published(q, l);
}

TEST_CASE("Megatron GPT-3 175B and MT-NLG 530B configurations (Narayanan et al. 2021 Table 1) are feasible") {
  PlanQuery q = query(test::catalog().resolve_model("megatron-175b"), "A100-80GB", "dgx-a100", 1536, 2048, 2304,
                      Framework::Megatron);
  Layout l;
  l.tp = 8;
  l.pp = 8;
  l.dp = 24;
  l.micro_batch = 1;
  l.grad_accum = 96;
  l.recompute = Recompute::Full;
  check_published(q, l);
  q = query(test::catalog().resolve_model("megatron-530b"), "A100-80GB", "dgx-a100", 2520, 2048, 2520, Framework::Megatron);
  l.pp = 35;
  l.dp = 9;
  l.vpp = 3;
  l.schedule = Schedule::Interleaved;
  l.grad_accum = 280;
  check_published(q, l);
}

TEST_CASE("nothing fits: no layout, and the nearest miss with its shortfall") {
  PlanQuery q = query(test::catalog().resolve_model("llama-3.1-70b"), "H100-80GB", "", 8, 2048, 0);
  q.space.allow_offload = false;
  const PlanResult r = plan(q);
  CHECK(r.top.empty());
  CHECK(r.fitting == 0);
  REQUIRE(r.has_nearest_miss);
  CHECK(r.nearest_short_bytes > 0);
  CHECK(r.nearest_miss.memory.gpu_bytes == q.cluster_shape.gpu_memory_bytes + r.nearest_short_bytes);
}

TEST_CASE("ranking: best first, ties towards the simpler layout; the Pareto front is non-dominated") {
  const PlanQuery q = query(test::catalog().resolve_model("llama-3.1-8b"), "H100-80GB", "", 8, 2048, 256);
  const PlanResult r = plan(q);
  REQUIRE(r.top.size() >= 2);
  for (size_t i = 1; i < r.top.size(); ++i) CHECK_FALSE(ranks_before(r.top[i], r.top[i - 1]));
  for (const Candidate& a : r.pareto) {
    for (const Candidate& b : r.pareto) {
      if (&a == &b) continue;
      const bool dominates = b.headroom_bytes() >= a.headroom_bytes() && b.time.tokens_per_s >= a.time.tokens_per_s &&
                             (b.headroom_bytes() > a.headroom_bytes() || b.time.tokens_per_s > a.time.tokens_per_s);
      CHECK_FALSE(dominates);
    }
  }
  // The front is the brute-force one: every fitting layout evaluated afresh,
  // the (headroom, tokens/s) points no other point matches or beats on both,
  // in headroom order (throughput then strictly falls).
  std::vector<std::pair<uint64_t, double>> points;
  for_each_layout(q.model, q.space, [&](const Layout& l, uint64_t) {
    if (!check_layout(q.model, l, q.cluster_shape, q.space.num_gpus).empty()) return;
    const MemoryResult m = evaluate_memory({q.model, l, q.cluster_shape, resolve_options({}, l)});
    if (!m.fits()) return;
    points.emplace_back(q.cluster_shape.gpu_memory_bytes - m.gpu_bytes,
                        evaluate_time({q.model, l, q.cluster.gpu, q.cluster.node, q.network}).tokens_per_s);
  });
  std::sort(points.begin(), points.end());
  points.erase(std::unique(points.begin(), points.end()), points.end());
  std::vector<std::pair<uint64_t, double>> front;
  for (const auto& p : points) {
    bool beaten = false;
    for (const auto& o : points) beaten |= o != p && o.first >= p.first && o.second >= p.second;
    if (!beaten) front.push_back(p);
  }
  REQUIRE(r.pareto.size() == front.size());
  for (size_t i = 0; i < front.size(); ++i) {
    CHECK(r.pareto[i].headroom_bytes() == front[i].first);
    CHECK(r.pareto[i].time.tokens_per_s == front[i].second);
    if (i > 0) CHECK(front[i].second < front[i - 1].second);
  }
  Candidate simple = r.top.front(), offloaded = r.top.front();
  simple.layout.offload_optimizer = Offload::None;
  offloaded.layout.offload_optimizer = Offload::Cpu;
  CHECK(ranks_before(simple, offloaded));  // equal throughput: less offload first
  CHECK(r.enumerated >= r.valid);
  CHECK(r.valid >= r.fitting);
}

TEST_CASE("min-max layer split (Boost.Graph bottleneck path)") {
  const std::vector<uint64_t> s = min_max_split({5, 1, 1, 1, 1, 5}, 2, 0, 0);
  CHECK(s == std::vector<uint64_t>{3, 3});
  // Seven units of work over three stages: the best maximum is 3.
  const std::vector<double> ones(6, 1.0);
  const std::vector<uint64_t> t = min_max_split(ones, 3, 1.0, 0.0);
  REQUIRE(t.size() == 3);
  CHECK(t[0] + t[1] + t[2] == 6);
  CHECK(std::max({t[0] + 1.0, static_cast<double>(t[1]), static_cast<double>(t[2])}) == 3.0);
  // The embedding-heavy first stage gets fewer layers.
  const std::vector<uint64_t> u = min_max_split(std::vector<double>(126, 1.0), 16, 6.0, 6.0);
  CHECK(u.front() < u[5]);
  CHECK(u.back() < u[5]);
}

TEST_CASE("the uneven split the planner offers is Megatron-expressible and as good as the min-max partition allows") {
  std::mt19937 rng(5);
  int optimal_expressible = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const uint64_t layers = 8 + rng() % 120;
    const uint32_t stages = 2 + static_cast<uint32_t>(rng() % std::min<uint64_t>(15, layers / 2));
    const double head = static_cast<double>(rng() % 8) * 0.5;  // the output layer, in layers' worth
    CAPTURE(layers);
    CAPTURE(stages);
    CAPTURE(head);
    const StageSplit e = best_expressible_split(layers, stages, 1.0, 0.0, head);
    auto worst_of = [&](const std::vector<uint64_t>& split) {
      double w = 0;
      for (size_t i = 0; i < split.size(); ++i) w = std::max(w, static_cast<double>(split[i]) + (i + 1 == split.size() ? head : 0));
      return w;
    };
    std::vector<uint64_t> default_split, chosen;
    for (uint32_t s = 0; s < stages; ++s) default_split.push_back(layers_on_stage(layers, stages, s));
    Layout l;
    l.pp = stages;
    l.first_stage_layers = e.first;
    l.last_stage_layers = e.last;
    for (uint32_t s = 0; s < stages; ++s) chosen.push_back(layers_on_stage(layers, l, s));
    uint64_t sum = 0;
    for (uint64_t n : chosen) sum += n;
    CHECK(sum == layers);
    // Megatron-Core's rule holds (check_layout enforces the same).
    ModelShape m;
    m.layers = layers;
    m.heads = m.kv_heads = m.hidden = m.ffn = 1;
    m.position = PositionKind::Rotary;
    l.dp = 1;
    if (e.first || e.last) CHECK(check_layout_shape(m, l, ClusterShape{}, stages) == "");
    // Never worse than the default split, never better than the min-max optimum.
    const std::vector<uint64_t> optimum = min_max_split(std::vector<double>(layers, 1.0), stages, 0.0, head);
    CHECK(worst_of(chosen) <= worst_of(default_split));
    CHECK(worst_of(chosen) >= worst_of(optimum));
    // Where the optimum itself is expressible (equal stages between the ends), it is reached.
    bool expressible = true;
    for (size_t i = 2; i + 1 < optimum.size(); ++i) expressible &= optimum[i] == optimum[1];
    if (expressible) {
      CHECK(worst_of(chosen) == worst_of(optimum));
      ++optimal_expressible;
    }
  }
  CHECK(optimal_expressible > 20);
}

TEST_CASE("uneven splits: Llama-3.1-8B's 128K-vocabulary head makes the last stage lighter and the step faster") {
  PlanQuery q = query(test::catalog().resolve_model("llama-3.1-8b"), "H100-80GB", "", 8, 4096, 0);
  const StageSplit s = planner_split(q.model, 4, Recompute::None, 4096);
  CHECK(s.last > 0);
  CHECK(s.last < 8);  // 32 layers over 4 stages: fewer than the even 8 on the head's stage
  Layout even;
  even.dp = 2;
  even.pp = 4;
  even.micro_batch = 1;
  even.grad_accum = 16;
  even.seq_len = 4096;
  Layout uneven = even;
  uneven.first_stage_layers = s.first;
  uneven.last_stage_layers = s.last;
  REQUIRE(check_layout(q.model, uneven, q.cluster_shape, 8).empty());
  const double t_even = evaluate_time({q.model, even, q.cluster.gpu, q.cluster.node, q.network}).total_s;
  const double t_uneven = evaluate_time({q.model, uneven, q.cluster.gpu, q.cluster.node, q.network}).total_s;
  CHECK(t_uneven < t_even);
  // The search offers it.
  bool offered = false;
  for_each_layout(q.model, q.space, [&](const Layout& l, uint64_t) { offered |= l.pp == 4 && l.last_stage_layers == s.last; });
  CHECK(offered);
  // And the Megatron arguments carry it.
  CHECK(check_layout(q.model, uneven, q.cluster_shape, 8).empty());
}

TEST_CASE("family scaling reproduces the published shapes") {
  CHECK(count_params(family_model("llama", 4096)).total == 8030261248ull);   // Llama-3.1-8B
  // Deeper members follow the rule, not Meta's exact depths (70B has 80 layers, the rule 64).
  CHECK(count_params(family_model("llama", 16384)).total > 400e9);
  CHECK(count_params(family_model("gpt", 12288)).total ==
        count_params(test::catalog().resolve_model("gpt3-175b")).total);     // GPT-3 175B
}

namespace {

// Largest hidden size (multiple of 128) of `family` that the search finds a layout for.
uint64_t max_hidden(const std::string& family, const char* gpu, const char* node, uint64_t gpus, uint32_t seq,
                    bool param_offload, bool nvme) {
  uint64_t lo = 4, hi = 512;
  auto trains = [&](uint64_t k) {
    PlanQuery q = query(family_model(family, 128 * k), gpu, node, gpus, seq, 0);
    q.space.allow_param_offload = param_offload;
    q.space.allow_nvme = nvme;
    q.space.micro_batches = {1};
    q.top_k = 1;
    return !plan(q).top.empty();
  };
  while (lo + 1 < hi) {
    const uint64_t mid = (lo + hi) / 2;
    (trains(mid) ? lo : hi) = mid;
  }
  return 128 * lo;
}

}  // namespace

TEST_CASE("ZeRO-Offload: about 13B parameters train on one 32 GB V100 with the optimizer on the CPU") {
  // arXiv 2101.06840 Sec. 6.2: 13B on a single V100; without offload about 1.4B.
  const uint64_t h = max_hidden("gpt", "V100-32GB", "dgx-2", 1, 1024, false, false);
  const double params = static_cast<double>(count_params(family_model("gpt", h)).total);
  MESSAGE("largest gpt with optimizer offload on one V100-32GB: hidden " << h << ", " << params / 1e9 << "B");
  CHECK(params > 10e9);
  CHECK(params < 16e9);
}

TEST_CASE("ZeRO-Infinity: a trillion parameters on one DGX-2 (16 V100) with NVMe") {
  // arXiv 2104.07857 Sec. 8: 1T on one DGX-2 node with NVMe offload.
  const uint64_t h = max_hidden("gpt", "V100-32GB", "dgx-2", 16, 1024, true, true);
  const double params = static_cast<double>(count_params(family_model("gpt", h)).total);
  MESSAGE("largest gpt with NVMe offload on one DGX-2: hidden " << h << ", " << params / 1e12 << "T");
  CHECK(params >= 0.9e12);
}

TEST_CASE("the throughput bound prunes without changing the answer") {
  for (const char* model : {"llama-3.1-8b", "mixtral-8x7b", "megatron-22b"}) {
    CAPTURE(model);
    PlanQuery q = query(test::catalog().resolve_model(model), "H100-80GB", "", 16, 2048, 0);
    q.top_k = 8;
    const PlanResult fast = plan(q);
    q.exhaustive = true;
    const PlanResult full = plan(q);
    CHECK(full.bounded == 0);
    REQUIRE(fast.top.size() == full.top.size());
    for (size_t i = 0; i < fast.top.size(); ++i) {
      CHECK(describe(fast.top[i].layout) == describe(full.top[i].layout));
      CHECK(fast.top[i].time.tokens_per_s == full.top[i].time.tokens_per_s);
      CHECK(fast.top[i].memory.gpu_bytes == full.top[i].memory.gpu_bytes);
    }
    REQUIRE(fast.pareto.size() == full.pareto.size());
    for (size_t i = 0; i < fast.pareto.size(); ++i) {
      CHECK(fast.pareto[i].time.tokens_per_s == full.pareto[i].time.tokens_per_s);
      CHECK(fast.pareto[i].headroom_bytes() == full.pareto[i].headroom_bytes());
    }
    MESSAGE(model << ": " << fast.bounded << " of " << fast.fitting << " fitting layouts bounded out");
  }
}

// The evaluators keep per-shape and per-state work between calls; along the
// search's own order (where that reuse happens) every answer must equal a
// fresh evaluation's, also when the options change between calls and for a
// tile factor that has no cached slot.
TEST_CASE("the search's evaluators answer as fresh evaluations along the search order") {
  struct Case {
    std::string model;
    uint64_t gpus;
    uint32_t seq;
    Framework framework;
    bool both_attentions;  // materialised attention (and selective recompute) too
  };
  for (const Case& c : {Case{"llama-3.1-8b", 16, 2048, Framework::Zeroplan, false},
                        Case{"mixtral-8x7b", 16, 2048, Framework::Zeroplan, false},
                        Case{"gpt2-1.5b", 8, 1024, Framework::DeepSpeed, true}}) {
    CAPTURE(c.model);
    PlanQuery q = query(test::catalog().resolve_model(c.model), "H100-80GB", "", c.gpus, c.seq, 0, c.framework);
    if (c.both_attentions) q.space.attentions = {Attention::Flash, Attention::Materialized};
    MemoryEvaluator memory;
    TimeEvaluator timer;
    MemoryOptions small_buckets;
    small_buckets.reduce_bucket_elems = 1u << 20;
    uint64_t checked = 0, n = 0, last_shape = 0;
    bool last_checkpoints_to_cpu = false;
    for_each_layout(q.model, q.space, [&](const Layout& visited, uint64_t shape_id) {
      if (!check_layout(q.model, visited, q.cluster_shape, q.space.num_gpus).empty()) return;
      Layout l = visited;
      if (n % 97 == 5) l.tile_factor = 8;  // no slot for this factor
      const MemoryOptions o = resolve_options(n % 13 == 0 ? small_buckets : MemoryOptions{}, l);
      ++n;
      // As the planner calls them: Reuse::SameShape within a shape id (and
      // checkpoint placement), where the state choices alone change.
      const Reuse time_reuse = shape_id == last_shape ? Reuse::SameShape : Reuse::Check;
      const Reuse memory_reuse = time_reuse == Reuse::SameShape && l.checkpoints_to_cpu == last_checkpoints_to_cpu
                                     ? Reuse::SameShape : Reuse::Check;
      last_shape = shape_id;
      last_checkpoints_to_cpu = l.checkpoints_to_cpu;
      const MemoryFit fit = memory.evaluate_fit({q.model, l, q.cluster_shape, o}, memory_reuse);
      const MemoryResult fresh = evaluate_memory({q.model, l, q.cluster_shape, o});
      const TimeInputs t{q.model, l, q.cluster.gpu, q.cluster.node, q.network};
      const double tokens_per_s = timer.tokens_per_s(t, time_reuse);
      const bool same = fit.gpu_bytes == fresh.gpu_bytes && fit.stage == fresh.stage &&
                        fit.host_bytes_per_node == fresh.host_bytes_per_node &&
                        fit.nvme_bytes_per_node == fresh.nvme_bytes_per_node && fit.fits() == fresh.fits() &&
                        tokens_per_s == evaluate_time(t).tokens_per_s;
      if (!same) {
        CAPTURE(describe(l));
        CHECK(fit.gpu_bytes == fresh.gpu_bytes);
        CHECK(fit.host_bytes_per_node == fresh.host_bytes_per_node);
        CHECK(fit.nvme_bytes_per_node == fresh.nvme_bytes_per_node);
        CHECK(tokens_per_s == evaluate_time(t).tokens_per_s);
      }
      checked += same;
    });
    CHECK(checked == n);
    CHECK(n > 3000);
    MESSAGE(c.model << ": " << n << " layouts checked against fresh evaluations");
  }
}

TEST_CASE("state choices: the frameworks' ZeRO and offload rules, each visited layout's state half valid") {
  SearchSpace s;
  // zeroplan: ZeRO 0 (1), 1 and 2 with three optimizer placements (6), 3 with
  // three optimizer x three parameter placements (9), and the tiled pass:
  // parameter offload to CPU or NVMe x three optimizer placements x tile 4, 16 (12).
  CHECK(state_choices(s, false).size() == 1 + 6 + 9 + 12);
  CHECK(state_choices(s, true).size() == 28);
  s.framework = Framework::DeepSpeed;
  CHECK(state_choices(s, true).size() == 1 + 3);  // the pipeline engine: ZeRO 0-1
  CHECK(state_choices(s, false).size() == 28);
  s.framework = Framework::Megatron;
  CHECK(state_choices(s, false).size() == 2);  // no ZeRO 2/3, no offload
  s.framework = Framework::Zeroplan;
  s.allow_nvme = false;
  CHECK(state_choices(s, false).size() == 1 + 4 + 4 + 4);  // no NVMe: ZeRO-3 with CPU parameter offload tiles 4, 16
  s.allow_param_offload = false;
  CHECK(state_choices(s, false).size() == 1 + 2 + 2 + 2);
  for (Framework f : {Framework::Zeroplan, Framework::DeepSpeed, Framework::Megatron}) {
    PlanQuery q = query(test::catalog().resolve_model("gpt2-1.5b"), "H100-80GB", "", 8, 1024, 0, f);
    uint64_t visited = 0, valid = 0;
    for_each_layout(q.model, q.space, [&](const Layout& l, uint64_t) {
      ++visited;
      valid += check_layout_states(l) == nullptr;
    });
    CHECK(visited > 100);
    CHECK(valid == visited);
  }
}

TEST_CASE("attention kernels searched: flash where it runs on tensor cores, materialised beside or instead of it") {
  const ModelShape gpt2 = make_shape(test::catalog().resolve_model("gpt2-1.5b"));  // head dim 64
  using V = std::vector<Attention>;
  const V flash{Attention::Flash}, both{Attention::Flash, Attention::Materialized}, mat{Attention::Materialized};
  CHECK(default_attentions(gpt2, Framework::Zeroplan, Precision::Bf16, true) == flash);
  CHECK(default_attentions(gpt2, Framework::Zeroplan, Precision::Fp16, false) == both);  // warp kernels on CUDA cores
  CHECK(default_attentions(gpt2, Framework::Zeroplan, Precision::Fp32, true) == both);
  CHECK(default_attentions(gpt2, Framework::Megatron, Precision::Bf16, true) == flash);
  CHECK(default_attentions(gpt2, Framework::DeepSpeed, Precision::Fp16, false) == mat);  // FlashAttention-2 needs Ampere
  const PlanQuery h100 = query(test::catalog().resolve_model("gpt2-1.5b"), "H100-80GB", "", 8, 1024, 0);
  CHECK(h100.space.attentions == flash);
  const PlanQuery v100 = query(test::catalog().resolve_model("gpt2-1.5b"), "V100-32GB", "", 8, 1024, 0);
  CHECK(v100.space.precision == Precision::Fp16);
  CHECK(v100.space.attentions == both);
}

TEST_CASE("selective recompute is searched with materialised attention only, where it drops the scores") {
  PlanQuery q = query(test::catalog().resolve_model("gpt2-1.5b"), "H100-80GB", "", 8, 1024, 0);
  q.space.attentions = {Attention::Flash, Attention::Materialized};
  uint64_t flash = 0, materialized = 0, selective = 0, selective_flash = 0;
  for_each_layout(q.model, q.space, [&](const Layout& l, uint64_t) {
    (l.attention == Attention::Flash ? flash : materialized) += 1;
    selective += l.recompute == Recompute::Selective;
    selective_flash += l.recompute == Recompute::Selective && l.attention == Attention::Flash;
  });
  CHECK(selective_flash == 0);
  CHECK(selective > 0);
  // Per shape: flash visits no and full recompute, materialised all three modes.
  CHECK(materialized > flash);
  // Selective drops the materialised scores: less memory than no recompute.
  Layout l;
  l.dp = 8;
  l.micro_batch = 4;
  l.grad_accum = 1;
  l.seq_len = 1024;
  l.zero_stage = 1;
  l.attention = Attention::Materialized;
  const MemoryOptions o = resolve_options({}, l);
  const uint64_t none = evaluate_memory({q.model, l, q.cluster_shape, o}).gpu_bytes;
  l.recompute = Recompute::Selective;
  CHECK(evaluate_memory({q.model, l, q.cluster_shape, o}).gpu_bytes < none);
  // Under flash the same switch changes neither memory nor time in zeroplan's executor.
  l.attention = Attention::Flash;
  const TimeInputs with{q.model, l, q.cluster.gpu, q.cluster.node, q.network};
  const uint64_t flash_selective = evaluate_memory({q.model, l, q.cluster_shape, o}).gpu_bytes;
  const StepTime t_selective = evaluate_time(with);
  l.recompute = Recompute::None;
  const TimeInputs without{q.model, l, q.cluster.gpu, q.cluster.node, q.network};
  CHECK(evaluate_memory({q.model, l, q.cluster_shape, o}).gpu_bytes == flash_selective);
  CHECK(evaluate_time(without).total_s == t_selective.total_s);
  CHECK(t_selective.hardware_flops == t_selective.model_flops);  // nothing recomputed, nothing counted
}

TEST_CASE("on a V100 the search finds materialised attention faster than zeroplan's CUDA-core flash kernels") {
  PlanQuery q = query(test::catalog().resolve_model("gpt2-1.5b"), "V100-32GB", "", 8, 1024, 0);
  q.top_k = 1;
  const PlanResult any = plan(q);
  q.space.attentions = {Attention::Flash};
  const PlanResult flash = plan(q);
  REQUIRE(!any.top.empty());
  REQUIRE(!flash.top.empty());
  CHECK(any.top.front().layout.attention == Attention::Materialized);
  CHECK(any.top.front().time.tokens_per_s > flash.top.front().time.tokens_per_s);
}
