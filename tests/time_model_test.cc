// The communication and time model, formula by formula, against hand-computed
// values: bus-bandwidth factors, the 2 Psi / 3 Psi statements of the ZeRO
// paper (and deepspeed-overview.md Sec. 2.5), bubble fractions, FLOP
// conventions, topology read-offs and rank placement.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "costmodel/compute.h"
#include "costmodel/gradient_zeroing.h"
#include "costmodel/model_states.h"
#include "costmodel/time_model.h"
#include "models/param_count.h"
#include "test_support.h"

using namespace zp;

namespace {

struct Setup {
  Cluster cluster;
  Network net;
};

Setup setup(const char* gpu, const char* node, uint64_t gpus) {
  Setup s;
  s.cluster = make_cluster(test::catalog(), gpu, node, gpus);
  s.net = make_network(s.cluster, Catalog::builtin_data_dir());
  return s;
}

// A catalog model's shape and its parameter count.
struct CatalogModel {
  ModelShape shape;
  double params = 0;
};
CatalogModel catalog_model(const char* name) {
  const ModelSpec spec = test::catalog().resolve_model(name);
  return {make_shape(spec), static_cast<double>(count_params(spec).total)};
}

StepTime run(const char* model, const Layout& l, const Setup& s) {
  const ModelShape m = make_shape(test::catalog().resolve_model(model));
  REQUIRE(check_layout(m, l, make_cluster_shape(s.cluster), s.cluster.num_gpus).empty());
  return evaluate_time({m, l, s.cluster.gpu, s.cluster.node, s.net});
}

double dp_sent(const StepTime& t) {
  double sent = 0;
  for (int i = 0; i < t.comm_rows; ++i) {
    if (std::string(t.comm[i].dimension) == "dp") sent += t.comm[i].sent_bytes;
  }
  return sent;
}

}  // namespace

TEST_CASE("bus-bandwidth factors of nccl-tests: all-reduce 2(n-1)/n, all-gather (n-1)/n") {
  CHECK(ring_all_reduce_bytes(1000, 8) == doctest::Approx(1750));
  CHECK(ring_all_gather_bytes(1000, 8) == doctest::Approx(875));
  CHECK(ring_all_reduce_bytes(1000, 1) == 0);
}

TEST_CASE("ZeRO-1/2 move 2 Psi like plain data parallelism; ZeRO-3 moves 3 Psi (1.5x)") {
  const Setup s = setup("H100-80GB", "", 8);
  Layout l;
  l.dp = 8;
  l.precision = Precision::Bf16;
  const StepTime z0 = run("llama-3.1-8b", l, s);
  const double psi = 8030261248.0 * 2;  // bf16 bytes
  CHECK(dp_sent(z0) == doctest::Approx(2 * psi * 7 / 8).epsilon(1e-6));
  l.zero_stage = 1;
  CHECK(dp_sent(run("llama-3.1-8b", l, s)) == doctest::Approx(dp_sent(z0)).epsilon(1e-6));
  l.zero_stage = 2;
  CHECK(dp_sent(run("llama-3.1-8b", l, s)) == doctest::Approx(dp_sent(z0)).epsilon(1e-6));
  l.zero_stage = 3;
  CHECK(dp_sent(run("llama-3.1-8b", l, s)) == doctest::Approx(1.5 * dp_sent(z0)).epsilon(1e-6));
}

TEST_CASE("pipeline bubble: (p-1)/m for 1F1B and GPipe, (p-1)/(v m) interleaved") {
  const Setup s = setup("A100-80GB", "dgx-a100", 8);
  Layout l;
  l.pp = 8;
  l.grad_accum = 32;
  StepTime t = run("megatron-22b", l, s);
  // bubble / pipeline time = (p-1)/(m+p-1), i.e. bubble / ideal = (p-1)/m
  CHECK(t.bubble_fraction == doctest::Approx(7.0 / (32 + 7)));
  CHECK(t.warmup_s + t.cooldown_s == doctest::Approx(t.bubble_s));
  CHECK(t.cooldown_s > t.warmup_s);  // backward is the longer half
  CHECK(t.bubble_s / (t.bubble_s + t.compute_s + t.pp_comm_s + t.tp_comm_s) == doctest::Approx(7.0 / 39));
  l.schedule = Schedule::GPipe;
  CHECK(run("megatron-22b", l, s).bubble_fraction == doctest::Approx(7.0 / 39));
  l.schedule = Schedule::Interleaved;
  l.vpp = 3;
  t = run("megatron-22b", l, s);
  CHECK(t.bubble_fraction == doctest::Approx((7.0 / 3) / (32 + 7.0 / 3)));
}

TEST_CASE("FLOP conventions: model FLOPs are Korthikanti Eq. 7; with full recompute, Narayanan Eq. 3") {
  const Setup s = setup("A100-80GB", "dgx-a100", 8);
  const ModelShape m = make_shape(test::catalog().resolve_model("megatron-22b"));
  Layout l;
  l.tp = 8;
  l.micro_batch = 4;
  l.recompute = Recompute::Full;
  const StepTime t = run("megatron-22b", l, s);
  CHECK(t.model_flops == doctest::Approx(korthikanti_eq7_flops(m, 2048, 4)).epsilon(1e-12));
  CHECK(t.hardware_flops == doctest::Approx(narayanan_eq3_flops(m, 2048, 4)).epsilon(1e-12));
  CHECK(t.mfu == doctest::Approx(t.model_flops / (t.total_s * 8 * 312e12)));
  CHECK(t.tokens_per_s == doctest::Approx(4 * 2048 / t.total_s));
}

TEST_CASE("the topology graph: NVLink inside a node, NIC shares across nodes, leaves beyond 32 nodes") {
  const LinkSummary dgx = summarize_topology(make_cluster(test::catalog(), "H100-80GB", "dgx-h100", 16));
  CHECK(dgx.intra_bytes_per_s == doctest::Approx(450e9));  // NVLink 4: 900 GB/s both ways
  CHECK(dgx.inter_bytes_per_s == doctest::Approx(50e9));   // one 400 Gb/s NIC per GPU
  const LinkSummary l40s = summarize_topology(make_cluster(test::catalog(), "L40S", "", 16));
  CHECK(l40s.intra_bytes_per_s == doctest::Approx(32e9));  // PCIe Gen4, no NVLink
  CHECK(l40s.inter_bytes_per_s == doctest::Approx(25e9 / 4));  // 2 NICs shared by 8 GPUs
  const LinkSummary big = summarize_topology(make_cluster(test::catalog(), "H100-80GB", "dgx-h100", 8 * 64));
  CHECK(big.cross_leaf_latency_s > big.inter_latency_s);
  CHECK(big.cross_leaf_bytes_per_s == doctest::Approx(50e9));  // full bisection
  CHECK(big.vertices > 0);
}

TEST_CASE("rank placement: tp innermost, then dp, then pp") {
  LinkSummary links;
  links.gpus_per_node = 8;
  Layout l;
  l.tp = 8;
  l.dp = 4;
  l.pp = 2;
  GroupSpan tp = group_span(l, Dimension::Tensor, links);
  CHECK(tp.per_node == 8);
  CHECK(tp.nodes == 1);
  GroupSpan dp = group_span(l, Dimension::Data, links);
  CHECK(dp.per_node == 1);
  CHECK(dp.nodes == 4);
  l.tp = 2;
  dp = group_span(l, Dimension::Data, links);
  CHECK(dp.per_node == 4);
  CHECK(dp.nodes == 1);
  l.tp = 16;
  tp = group_span(l, Dimension::Tensor, links);
  CHECK(tp.nodes == 2);
}

TEST_CASE("a tensor-parallel group crossing nodes is slower than the same group inside one") {
  const Setup s = setup("H100-80GB", "dgx-h100", 16);
  const GroupSpan inside{8, 8, 1, false};
  const GroupSpan across{8, 4, 2, false};
  const double bytes = 64e6;
  // The inter-node rails (one 50 GB/s NIC per GPU, against 450 GB/s NVLink)
  // carry a quarter of the buffer each: clearly slower, not 9x.
  CHECK(all_reduce_s(bytes, across, s.net) > 1.5 * all_reduce_s(bytes, inside, s.net));
  // And through the whole model: tp 16 over two nodes vs tp 8 in one.
  Layout a;
  a.tp = 8;
  a.dp = 2;
  Layout b;
  b.tp = 16;
  b.dp = 1;
  CHECK(run("megatron-22b", b, s).tp_comm_s > 1.5 * run("megatron-22b", a, s).tp_comm_s);
}

TEST_CASE("ring vs tree: latency grows linearly for the ring, logarithmically for the tree") {
  const Setup s = setup("H100-80GB", "dgx-h100", 8 * 128);
  const GroupSpan g{128, 1, 128, true};
  // A tiny message is latency-bound: well under what 2(n-1) ring steps would cost.
  const double tiny = all_reduce_s(8, g, s.net);
  CHECK(tiny < 2 * 127 * s.net.eff.nic_latency_s);
  CHECK(tiny > 2 * std::log2(128.0) * s.net.eff.nic_latency_s * 0.99);
}

// Data-parallel traffic hidden behind backward as each framework runs it:
// DeepSpeed's overlap_comm for ZeRO-3 only, Megatron's --overlap-grad-reduce
// off, zeroplan's executor never (every collective waits); --dp-overlap
// overrides. Without overlap the whole collective time is on the step.
TEST_CASE("data-parallel overlap: the framework's default, and the flag that overrides it") {
  const Setup s = setup("H100-80GB", "", 16);  // two nodes: the gradients cross the NICs
  Layout l;
  l.dp = 16;
  l.zero_stage = 1;
  l.micro_batch = 2;
  l.seq_len = 2048;
  auto dp_time = [&](Framework f, Toggle overlap) {
    l.framework = f;
    l.dp_overlap = overlap;
    return run("llama-3.1-8b", l, s).dp_comm_s;
  };
  const double exposed = dp_time(Framework::Zeroplan, Toggle::Off);
  CHECK(exposed > 0);
  CHECK(dp_time(Framework::Zeroplan, Toggle::Default) == exposed);
  CHECK(dp_time(Framework::Zeroplan, Toggle::On) < exposed);
  CHECK(dp_time(Framework::Megatron, Toggle::Default) == dp_time(Framework::Megatron, Toggle::Off));
  CHECK(dp_time(Framework::DeepSpeed, Toggle::Default) == dp_time(Framework::DeepSpeed, Toggle::Off));
  l.zero_stage = 3;
  CHECK(dp_time(Framework::DeepSpeed, Toggle::Default) == dp_time(Framework::DeepSpeed, Toggle::On));
  CHECK(dp_time(Framework::DeepSpeed, Toggle::On) < dp_time(Framework::DeepSpeed, Toggle::Off));
}

// validate's prediction for one emulated rank: its stage's compute, the
// optimizer and offload; no network, no bubble.
TEST_CASE("an emulated rank runs its stage's compute, the optimizer and offload, and waits for no one") {
  const Setup s = setup("H100-80GB", "", 64);
  const ModelShape m = make_shape(test::catalog().resolve_model("gpt2-1.5b"));
  Layout l;
  l.dp = 1;
  l.micro_batch = 4;
  l.seq_len = 1024;
  l.grad_accum = 4;
  TimeEvaluator timer;
  auto inputs = [&]() { return TimeInputs{m, l, s.cluster.gpu, s.cluster.node, s.net}; };
  // One GPU: the rank is the world.
  const StepTime one = timer.evaluate(inputs());
  const TimeEvaluator::EmulatedRank alone = timer.emulated_rank(inputs(), 0);
  CHECK(alone.total_s == doctest::Approx(one.total_s).epsilon(1e-12));
  CHECK(alone.compute_s == doctest::Approx(one.compute_s).epsilon(1e-12));
  // A pipeline: the last stage (the default split's busiest, with the output
  // layer) computes what the time model's slot holds, without the bubble and
  // the transfers; the first stage has no output layer.
  l.pp = 4;
  l.dp = 16;
  l.zero_stage = 1;
  const StepTime piped = timer.evaluate(inputs());
  const TimeEvaluator::EmulatedRank last = timer.emulated_rank(inputs(), 3), first = timer.emulated_rank(inputs(), 0);
  CHECK(last.compute_s == doctest::Approx(piped.compute_s).epsilon(1e-9));
  CHECK(first.compute_s < last.compute_s);
  CHECK(last.total_s < piped.total_s);  // bubble, point-to-point and data-parallel traffic
  // Its ZeRO-1 reduce and gather are local copies at the step's end.
  CHECK(last.local_copies_at_step_end_s > 0);
  CHECK(last.local_copies_in_compute_s == 0);
  CHECK(last.total_s == doctest::Approx(piped.compute_s + last.local_copies_at_step_end_s + last.local_receives_s +
                                        piped.optimizer_s + piped.offload_s + piped.gradient_zeroing_s)
                            .epsilon(1e-9));
  // Its receives, zero-filled by the loopback: the last stage's input in each
  // of the 4 micro-batches (4 x 1,024 tokens x 1,600 bf16), and the tied
  // table's gradient from the first stage once (a memset and a launch each).
  const EfficiencyCurves& eff = s.net.eff;
  const double io_bytes = 4.0 * 1024 * 1600 * 2, table_bytes = 50257.0 * 1600 * 2;
  CHECK(last.local_receives_s == doctest::Approx((4 * io_bytes + table_bytes) / (s.cluster.gpu.hbm_bytes_per_s * eff.hbm_fraction) +
                                                 5 * eff.kernel_overhead_s)
                                     .epsilon(1e-6));
  // A middle stage receives its input and its output's gradient, no table.
  const TimeEvaluator::EmulatedRank middle = timer.emulated_rank(inputs(), 1);
  CHECK(middle.local_receives_s == doctest::Approx(8 * io_bytes / (s.cluster.gpu.hbm_bytes_per_s * eff.hbm_fraction) +
                                                   8 * eff.kernel_overhead_s)
                                       .epsilon(1e-6));
  CHECK(last.gradient_zeroing_s == doctest::Approx(piped.gradient_zeroing_s).epsilon(1e-12));  // ZeRO-1: all at the step's start
  // Offloaded, its CPU optimizer has the host to itself, where the world's
  // shares it with the node's other GPUs.
  l.offload_optimizer = Offload::Cpu;
  const StepTime offloaded = timer.evaluate(inputs());
  const TimeEvaluator::EmulatedRank alone_on_host = timer.emulated_rank(inputs(), 3);
  REQUIRE(s.cluster.node.gpus_per_node > 1);
  CHECK(alone_on_host.optimizer_s ==
        doctest::Approx(offloaded.optimizer_s / static_cast<double>(s.cluster.node.gpus_per_node)).epsilon(1e-9));
}

// The local copies that stand in for an emulated rank's collectives
// (executor/loopback_communicator.cc), at the HBM fraction plus a launch each.
TEST_CASE("an emulated rank's local copies: ZeRO-3's gathers in its compute, ZeRO-1/2's at the step's end") {
  const Setup s = setup("H200-141GB", "dgx-h200", 64);
  const auto [m, params] = catalog_model("gpt2-355m");
  Network net = s.net;
  const double hbm = s.cluster.gpu.hbm_bytes_per_s * net.eff.hbm_fraction;
  Layout l;
  l.micro_batch = 4;
  l.seq_len = 1024;
  l.grad_accum = 2;
  l.attention = Attention::Materialized;
  TimeEvaluator timer;
  auto rank = [&](uint32_t dp, uint8_t zero) {
    l.dp = dp;
    l.zero_stage = zero;
    return timer.emulated_rank(TimeInputs{m, l, s.cluster.gpu, s.cluster.node, net}, 0);
  };
  // One rank, or ZeRO-0's all-reduce (the loopback leaves the data as they are): no copies.
  for (uint8_t zero : {0, 1, 2, 3}) CHECK(rank(1, zero).local_copies_in_compute_s + rank(1, zero).local_copies_at_step_end_s == 0);
  CHECK(rank(64, 0).local_copies_in_compute_s + rank(64, 0).local_copies_at_step_end_s == 0);
  // ZeRO-3 over 64: each of the 2 micro-batches gathers all bf16 weights
  // forward and backward (read + written) and copies its 1/64 of the
  // gradients; launches aside, exactly those bytes.
  net.eff.kernel_overhead_s = 0;
  const TimeEvaluator::EmulatedRank z3 = rank(64, 3);
  CHECK(z3.local_copies_at_step_end_s == 0);
  CHECK(z3.local_copies_in_compute_s == doctest::Approx((2 * 2 * 2 * 2 * params + 2 * 2 * 2 * params / 64) / hbm));
  // Launches: 7 copies a gather of 64 (1 + log2 64), 4 of 8.
  net.eff.kernel_overhead_s = 1e-6;
  const double launches_64 = rank(64, 3).local_copies_in_compute_s - z3.local_copies_in_compute_s;
  net.eff.kernel_overhead_s = 0;
  const double bytes_8 = rank(8, 3).local_copies_in_compute_s;
  net.eff.kernel_overhead_s = 1e-6;
  const double launches_8 = rank(8, 3).local_copies_in_compute_s - bytes_8;
  CHECK(launches_64 / launches_8 == doctest::Approx((2.0 * 7 + 1) / (2.0 * 4 + 1)));
  // The copies inside forward and backward are part of the rank's compute.
  const TimeEvaluator::EmulatedRank with = rank(64, 3);
  CHECK(with.total_s == doctest::Approx(with.compute_s + with.optimizer_s + with.offload_s + with.gradient_zeroing_s));
  // ZeRO-2: the reduced slices inside, the updated chunks gathered at the end;
  // ZeRO-1: everything at the end.
  CHECK(rank(64, 2).local_copies_in_compute_s > 0);
  CHECK(rank(64, 2).local_copies_at_step_end_s > 0);
  CHECK(rank(64, 1).local_copies_in_compute_s == 0);
  CHECK(rank(64, 1).local_copies_at_step_end_s > 0);
  // ZeRO-2/3 offload copies each micro-batch's reduced chunks to the host
  // inside backward: predicted in the compute, where validate measures
  // them; ZeRO-1's one copy at the step's end stays in the offload.
  net.eff.kernel_overhead_s = 1e-6;
  const TimeEvaluator::EmulatedRank on_device = rank(8, 2);
  l.offload_optimizer = Offload::Cpu;
  const TimeEvaluator::EmulatedRank offloaded = rank(8, 2);
  CHECK(offloaded.offload_in_compute_s > 0);
  CHECK(offloaded.compute_s - offloaded.offload_in_compute_s == doctest::Approx(on_device.compute_s));
  CHECK(offloaded.total_s == doctest::Approx(offloaded.compute_s + offloaded.local_copies_at_step_end_s +
                                             offloaded.optimizer_s + offloaded.offload_s + offloaded.gradient_zeroing_s));
  CHECK(rank(8, 1).offload_in_compute_s == 0);
  CHECK(rank(8, 1).offload_in_sync_s > 0);  // copied and added inside the step-end gradient sync
  CHECK(rank(8, 1).total_s == doctest::Approx(rank(8, 1).compute_s + rank(8, 1).local_copies_at_step_end_s +
                                              rank(8, 1).offload_in_sync_s + rank(8, 1).optimizer_s +
                                              rank(8, 1).offload_s + rank(8, 1).gradient_zeroing_s));
  CHECK(offloaded.offload_in_sync_s == 0);
  l.offload_optimizer = Offload::None;
  // On a network zeroplan's ZeRO-1 still packs the gradient ranges into its
  // bucket, copies the reduced slice back and the gathered ranges out: on
  // the step's path beside the collectives (launches aside, those bytes).
  net.eff.kernel_overhead_s = 0;
  l.dp = 64;
  l.zero_stage = 1;
  auto dp_rows_s = [](const StepTime& t) {
    double sum = 0;
    for (int i = 0; i < t.comm_rows; ++i) {
      const CommRow& r = t.comm[static_cast<size_t>(i)];
      if (std::string(r.dimension) == "dp") sum += r.seconds;
    }
    return sum;
  };
  const StepTime world = timer.evaluate(TimeInputs{m, l, s.cluster.gpu, s.cluster.node, net});
  const double bytes = 2 * params;  // bf16 gradients and weights alike
  CHECK(world.dp_comm_s - dp_rows_s(world) == doctest::Approx((2 * bytes + 2 * bytes / 64 + 2 * bytes * 63 / 64) / hbm));
  l.framework = Framework::Megatron;  // its distributed optimizer: the collectives alone
  const StepTime megatron = timer.evaluate(TimeInputs{m, l, s.cluster.gpu, s.cluster.node, net});
  CHECK(megatron.dp_comm_s == doctest::Approx(dp_rows_s(megatron)));
}

TEST_CASE("ZeRO-Offload: the delayed parameter update hides the CPU step behind the GPU step") {
  const Setup s = setup("V100-32GB", "dgx-2", 16);
  Layout l;
  l.dp = 16;
  l.precision = Precision::Fp16;
  l.zero_stage = 2;
  l.offload_optimizer = Offload::Cpu;
  l.micro_batch = 8;
  l.seq_len = 1024;
  l.grad_accum = 8;
  const StepTime plain = run("gpt2-1.5b", l, s);
  CHECK(plain.optimizer_s > 0);
  CHECK(plain.offload_s > 0);
  l.delayed_update = true;
  const StepTime dpu = run("gpt2-1.5b", l, s);
  CHECK(dpu.total_s < plain.total_s);
  CHECK(dpu.optimizer_s == 0);
}

// zeroplan's executor sends ZeRO-2/3's reduced gradients to the host and adds
// them there in every micro-batch (ZeRO-1 once a step); the other
// frameworks' offload traffic is counted once a step.
TEST_CASE("optimizer offload: zeroplan's gradient traffic and host adds follow its micro-batches") {
  const Setup s = setup("H100-80GB", "", 8);
  Layout l;
  l.dp = 8;
  l.micro_batch = 2;
  l.seq_len = 1024;
  l.offload_optimizer = Offload::Cpu;
  auto offload_s = [&](Framework f, uint8_t zero, uint32_t ga) {
    l.framework = f;
    l.zero_stage = zero;
    l.grad_accum = ga;
    return run("gpt2-1.5b", l, s).offload_s;
  };
  const double z2_one = offload_s(Framework::Zeroplan, 2, 1), z2_four = offload_s(Framework::Zeroplan, 2, 4);
  CHECK(z2_four > 3 * z2_one);  // four passes of gradients, one of parameters
  CHECK(z2_four < 4 * z2_one);
  CHECK(offload_s(Framework::Zeroplan, 1, 4) == doctest::Approx(offload_s(Framework::Zeroplan, 1, 1)).epsilon(1e-12));
  CHECK(offload_s(Framework::DeepSpeed, 2, 4) == doctest::Approx(offload_s(Framework::DeepSpeed, 2, 1)).epsilon(1e-12));
  // A gradient pass: bf16 down over PCIe, and the host's add (at the node's
  // share) where it outlasts the micro-batch's backward; the parameters'
  // pass: bf16 up.
  const double gradient_pass = (z2_four - z2_one) / 3, parameter_pass = z2_one - gradient_pass;
  const EfficiencyCurves& eff = s.net.eff;
  const double pcie = s.cluster.gpu.pcie_bytes_per_s * eff.pcie_fraction;
  const double partition = parameter_pass * pcie / 2;
  l.framework = Framework::Zeroplan;
  l.zero_stage = 2;
  l.grad_accum = 1;
  const double backward_s = run("gpt2-1.5b", l, s).microbatch_backward_s;
  const double add_s = partition * eff.cpu_accumulate_s_per_param * static_cast<double>(s.cluster.node.gpus_per_node);
  CHECK(add_s > backward_s);  // this case's adds outlast backward: the difference shows
  CHECK(gradient_pass == doctest::Approx(partition * 2 / pcie + (add_s - backward_s)).epsilon(1e-9));
  // ZeRO-1: copied and added once, at the step's end, whole.
  const double z1 = offload_s(Framework::Zeroplan, 1, 1);
  CHECK(z1 == doctest::Approx(partition * 2 / pcie + add_s + parameter_pass).epsilon(1e-9));
}

TEST_CASE("recompute costs time: full > selective > none") {
  const Setup s = setup("A100-80GB", "dgx-a100", 8);
  Layout l;
  l.tp = 8;
  l.micro_batch = 4;
  l.attention = Attention::Materialized;
  const double none = run("megatron-22b", l, s).total_s;
  l.recompute = Recompute::Selective;
  const double sel = run("megatron-22b", l, s).total_s;
  l.recompute = Recompute::Full;
  const double full = run("megatron-22b", l, s).total_s;
  CHECK(none < sel);
  CHECK(sel < full);
  // Korthikanti Table 4 (one 22B layer): full recompute costs +39%, selective +7%.
  CHECK(full / none == doctest::Approx(1.39).epsilon(0.08));
  CHECK(sel / none == doctest::Approx(1.07).epsilon(0.05));
  // With flash attention zeroplan's executor keeps each layer's log-sum-exp
  // and rebuilds nothing under selective recompute; Megatron-LM still
  // recomputes the core attention.
  l.attention = Attention::Flash;
  l.recompute = Recompute::None;
  const double flash_none = run("megatron-22b", l, s).total_s;
  l.recompute = Recompute::Selective;
  CHECK(run("megatron-22b", l, s).total_s == flash_none);
  l.framework = Framework::Megatron;
  const double megatron_selective = run("megatron-22b", l, s).total_s;
  l.recompute = Recompute::None;
  CHECK(megatron_selective > run("megatron-22b", l, s).total_s);
}

TEST_CASE("the attention core is priced at the rate of the kernel that runs it") {
  const Setup s = setup("H200-141GB", "dgx-h200", 1);
  const GpuSpec& gpu = s.cluster.gpu;
  EfficiencyCurves e = s.net.eff;
  e.attention_peak_fraction = 0.5;
  e.flash_tc_fraction = 0.25;
  e.flash_warp_fraction = 0.2;
  e.flash_warp_half_dim = 64;
  ModelShape m = make_shape(test::catalog().resolve_model("gpt2-124m"));  // 12 heads of 64
  Layout l;
  l.seq_len = 1024;
  l.micro_batch = 4;
  // Seconds per counted forward FLOP of the attention core, launches aside.
  // Backward runs the kernel's own products: materialised 4 (twice the
  // forward's 2), FlashAttention-2 5 (S recomputed), zeroplan's flash
  // kernels 7 (S and dP recomputed in both the dq and the dk/dv pass).
  auto per_flop = [&](AttentionKernel expect) {
    const LayerCompute c = layer_compute(m, l, gpu, e);
    CHECK(c.attention_kernel == expect);
    REQUIRE(c.attention_flops > 0);
    const double forward = (c.attention_s - 2 * e.kernel_overhead_s) / c.attention_flops;
    const double backward = (c.attention_backward_s - 4 * e.kernel_overhead_s) / c.attention_flops;
    const double products = expect == AttentionKernel::Materialized ? 4 : expect == AttentionKernel::Flash ? 5 : 7;
    CHECK(backward == doctest::Approx(products / 2 * forward));
    return forward;
  };
  const double bf16 = gpu.bf16_dense_flops, fp32 = gpu.fp32_flops;
  auto heads = [&m](uint64_t count, uint64_t head_dim) {
    m.heads = m.kv_heads = count;
    m.head_dim = head_dim;
  };
  l.attention = Attention::Materialized;
  CHECK(per_flop(AttentionKernel::Materialized) == doctest::Approx(1 / (0.5 * bf16)));
  l.attention = Attention::Flash;
  CHECK(per_flop(AttentionKernel::FlashTensorCores) == doctest::Approx(1 / (0.25 * bf16)));
  l.framework = Framework::Megatron;  // FlashAttention-2
  CHECK(per_flop(AttentionKernel::Flash) == doctest::Approx(1 / (0.5 * bf16)));
  l.framework = Framework::Zeroplan;
  // fp32 heads and bf16 heads the tiles do not take run warp per row on the
  // CUDA cores, at 0.2 d / (d + 64) of the fp32 peak.
  l.precision = Precision::Fp32;
  CHECK(per_flop(AttentionKernel::FlashWarp) == doctest::Approx(1 / (0.1 * fp32)));
  l.precision = Precision::Bf16;
  heads(3, 256);
  CHECK(per_flop(AttentionKernel::FlashWarp) == doctest::Approx(1 / (0.16 * fp32)));
  heads(8, 96);  // a multiple of 16 up to 128: the tiles
  CHECK(per_flop(AttentionKernel::FlashTensorCores) == doctest::Approx(1 / (0.25 * bf16)));
  heads(16, 48);
  CHECK(per_flop(AttentionKernel::FlashTensorCores) == doctest::Approx(1 / (0.25 * bf16)));
  heads(32, 24);  // not a multiple of 16
  CHECK(per_flop(AttentionKernel::FlashWarp) == doctest::Approx(1 / (0.2 * 24 / 88 * fp32)));
  // The step follows: a GPT-2 124M step on the warp kernels is slower than on the tiles.
  m = make_shape(test::catalog().resolve_model("gpt2-124m"));
  Layout full;
  full.seq_len = 1024;
  full.micro_batch = 8;
  const Network curves{s.net.links, e};
  const double tiles = evaluate_time({m, full, gpu, s.cluster.node, curves}).total_s;
  full.precision = Precision::Fp32;
  const double warp_fp32 = evaluate_time({m, full, gpu, s.cluster.node, curves}).total_s;
  CHECK(warp_fp32 > tiles);
}

TEST_CASE("a layer's memory-bound bytes are counted kernel by kernel, backward apart from forward") {
  const Setup s = setup("H200-141GB", "dgx-h200", 1);
  const EfficiencyCurves& e = s.net.eff;
  Layout l;
  l.seq_len = 1024;
  l.micro_batch = 8;
  l.dropout = Dropout::Off;  // as zeroplan's executor trains
  const double T = 8 * 1024, eb = 2;
  // GPT-2 XL (h 1,600, F 6,400, biases everywhere), flash: per kernel of
  // kernels/ (rows of T x h bf16): norms 2 x 2 forward, 2 x 6 backward;
  // residual adds 2 x 3, their gradients 2 x 5; GeLU 2 and 4 rows of T x F;
  // bias gradients read each biased product's output gradient once:
  // qkv 3h, projection h, fc F, fc projection h.
  const ModelShape gpt = make_shape(test::catalog().resolve_model("gpt2-1.5b"));
  const double h = 1600, F = 6400;
  // zeroplan's executor passes the residual stream's gradient to both
  // branches in one buffer (no residual kernels backward) and zeroes nothing
  // in a flash layer's backward (the products', GeLU's and the flash
  // kernels' input gradients are written; tests/executor_memory_test counts
  // it on the executor).
  LayerCompute c = layer_compute(gpt, l, s.cluster.gpu, e);
  CHECK(c.zeroed_backward_bytes == 0);
  CHECK(c.elementwise_forward_bytes == doctest::Approx(T * eb * (4 * h + 6 * h + 2 * F)));
  CHECK(c.elementwise_backward_bytes == doctest::Approx(T * eb * (12 * h + 3 * F + (3 * h + h + F + h))));
  // Seconds follow the bytes at the HBM fraction, with 8 launches forward and
  // 14 backward (16, the 2 residual kernels out).
  const double hbm = s.cluster.gpu.hbm_bytes_per_s * e.hbm_fraction;
  CHECK(c.elementwise_backward_s == doctest::Approx(c.elementwise_backward_bytes / hbm + 14 * e.kernel_overhead_s));
  CHECK(c.backward_s() == doctest::Approx(2 * c.gemm_s + c.attention_backward_s + c.elementwise_backward_s));
  // Materialised attention adds the softmax over S = b a s^2 scores: zeroplan's
  // products write fp32 scores (read 4 + write 2 forward; backward reads the
  // fp32 probability gradient and the probabilities, writes the score
  // gradient), the frameworks' fused softmax reads and writes bf16.
  const double S = 8 * 25 * 1024.0 * 1024;
  // Its backward adds into q, k and v's gradient, which is zeroed first: one
  // memset of 3 h a token, a launch more.
  l.attention = Attention::Materialized;
  const LayerCompute mat = layer_compute(gpt, l, s.cluster.gpu, e);
  const double zeroed = T * eb * 3 * h;
  CHECK(mat.zeroed_backward_bytes == doctest::Approx(zeroed));
  CHECK(mat.elementwise_forward_bytes - c.elementwise_forward_bytes == doctest::Approx(6 * S));
  CHECK(mat.elementwise_backward_bytes - c.elementwise_backward_bytes == doctest::Approx(8 * S + zeroed));
  CHECK(mat.elementwise_backward_s == doctest::Approx(mat.elementwise_backward_bytes / hbm + 15 * e.kernel_overhead_s));
  CHECK(mat.softmax_s == doctest::Approx(6 * S / hbm));
  l.framework = Framework::Megatron;  // whose autograd has each gradient written, not zeroed and added into
  const LayerCompute meg = layer_compute(gpt, l, s.cluster.gpu, e);
  CHECK(meg.zeroed_backward_bytes == 0);
  CHECK(meg.elementwise_forward_bytes - c.elementwise_forward_bytes == doctest::Approx(4 * S));
  // (and its residual adds' backward, 2 x 5 rows)
  CHECK(meg.elementwise_backward_bytes - c.elementwise_backward_bytes == doctest::Approx(6 * S + 10 * T * h * eb));
  // Dropout adds a byte mask per residual row and per score, and a read and
  // a write of each score, both ways.
  l.dropout = Dropout::On;
  const LayerCompute drop = layer_compute(gpt, l, s.cluster.gpu, e);
  CHECK(drop.elementwise_forward_bytes - meg.elementwise_forward_bytes == doctest::Approx(2 * T * h + 5 * S));
  CHECK(drop.elementwise_backward_bytes - meg.elementwise_backward_bytes == doctest::Approx(2 * T * h + 5 * S));
  // Llama 3.2 1B (h 2,048, F 8,192, 32 query and 8 key-value heads of 64, no
  // biases), flash: RMSNorms as the norms, SwiGLU 3 and 7 rows of T x F,
  // rotary on q and k 2 rows of T x (a + kv) d both ways.
  l = Layout{};
  l.seq_len = 1024;
  l.micro_batch = 8;
  const ModelShape llama = make_shape(test::catalog().resolve_model("llama-3.2-1b"));
  const double lh = 2048, lF = 8192, qk = (32 + 8) * 64;
  const LayerCompute lc = layer_compute(llama, l, s.cluster.gpu, e);
  CHECK(lc.elementwise_forward_bytes == doctest::Approx(T * eb * (4 * lh + 6 * lh + 3 * lF + 2 * qk)));
  // SwiGLU's backward 5 rows of T x F; no residual kernels backward, nothing
  // zeroed (flash).
  CHECK(lc.zeroed_backward_bytes == 0);
  CHECK(lc.elementwise_backward_bytes == doctest::Approx(T * eb * (12 * lh + 5 * lF + 2 * qk)));
  // Materialised, its 3 zeroed gradient buffers: q, k, v's (a + 2 kv) d = 3,072.
  l.attention = Attention::Materialized;
  const LayerCompute lmat = layer_compute(llama, l, s.cluster.gpu, e);
  CHECK(lmat.zeroed_backward_bytes == doctest::Approx(T * eb * 3072));
  CHECK(lmat.elementwise_backward_s - lmat.elementwise_backward_bytes / hbm ==
        doctest::Approx(lc.elementwise_backward_s - lc.elementwise_backward_bytes / hbm + 3 * e.kernel_overhead_s));
}

TEST_CASE("TimeEvaluator reuses per-shape work and gives the same answers (and tokens/s) as evaluate_time") {
  const Setup s = setup("H100-80GB", "dgx-h100", 64);
  const ModelShape m = make_shape(test::catalog().resolve_model("mixtral-8x7b"));
  TimeEvaluator evaluator;
  std::mt19937 rng(11);
  int checked = 0;
  for (int i = 0; i < 300; ++i) {
    Layout l;
    l.tp = 1u << (rng() % 4);
    l.pp = 1u << (rng() % 3);
    l.dp = static_cast<uint32_t>(64 / (l.tp * l.pp));
    l.ep = 1u << (rng() % 3);
    l.micro_batch = 1 + rng() % 2;
    l.grad_accum = l.pp * (1 + rng() % 3);
    l.zero_stage = static_cast<uint8_t>(rng() % 4);
    l.recompute = static_cast<Recompute>(rng() % 3);
    l.sequence_parallel = rng() % 2;
    if (l.zero_stage > 0 && rng() % 3 == 0) l.offload_optimizer = Offload::Cpu;
    if (!check_layout(m, l, make_cluster_shape(s.cluster), 64).empty()) continue;
    const StepTime a = evaluator.evaluate({m, l, s.cluster.gpu, s.cluster.node, s.net});
    const StepTime b = evaluate_time({m, l, s.cluster.gpu, s.cluster.node, s.net});
    CAPTURE(describe(l));
    CHECK(a.total_s == b.total_s);
    CHECK(a.model_flops == b.model_flops);
    CHECK(a.comm_rows == b.comm_rows);
    CHECK(evaluator.lower_bound_s({m, l, s.cluster.gpu, s.cluster.node, s.net}) <= a.total_s);
    CHECK(evaluator.tokens_per_s({m, l, s.cluster.gpu, s.cluster.node, s.net}) == b.tokens_per_s);
    ++checked;
  }
  CHECK(checked > 100);
}

// The time model works the bytes NVMe optimizer offload moves out once per
// pipeline, at ZeRO stage 1: they must not depend on the stage (1-3).
TEST_CASE("NVMe optimizer offload moves the same bytes per parameter at ZeRO 1, 2 and 3") {
  for (Framework f : {Framework::Zeroplan, Framework::DeepSpeed, Framework::Megatron})
    for (Precision p : {Precision::Bf16, Precision::Fp16, Precision::Fp32})
      for (Optimizer o : {Optimizer::Adam, Optimizer::Sgd})
        for (bool fp32_accum : {false, true}) {
          Layout l;
          l.framework = f;
          l.precision = p;
          l.optimizer = o;
          l.fp32_grad_accum = fp32_accum;
          l.offload_optimizer = Offload::Nvme;
          l.zero_stage = 1;
          const uint64_t at_one = optimizer_side_bytes_per_param(l);
          CHECK(at_one > 0);
          for (uint8_t z : {2, 3}) {
            l.zero_stage = z;
            CAPTURE(describe(l));
            CHECK(optimizer_side_bytes_per_param(l) == at_one);
          }
        }
}

// zeroplan's executor zeroes its gradient buffers (costmodel/gradient_zeroing.h;
// executor_memory_test holds the bytes to the executor's): a write at
// hbm_fraction plus a launch each, in the step and not in the frameworks'.
TEST_CASE("gradient zeroing: zeroplan's executor only, a write at hbm_fraction a memset, buckets inside backward") {
  const Setup s = setup("H200-141GB", "dgx-h200", 8);
  const auto [m, params] = catalog_model("gpt2-1.5b");
  Network net = s.net;
  const double hbm = s.cluster.gpu.hbm_bytes_per_s * net.eff.hbm_fraction;
  Layout l;
  l.micro_batch = 8;
  l.seq_len = 1024;
  l.grad_accum = 2;
  TimeEvaluator timer;
  auto inputs = [&]() { return TimeInputs{m, l, s.cluster.gpu, s.cluster.node, net}; };
  // ZeRO-0 on one GPU: the whole bf16 gradient buffer, one memset, once a step.
  const StepTime z0 = timer.evaluate(inputs());
  CHECK(z0.gradient_zeroing_s == doctest::Approx(params * 2 / hbm + net.eff.kernel_overhead_s).epsilon(1e-9));
  CHECK(z0.total_s == doctest::Approx(z0.compute_s + z0.optimizer_s + z0.gradient_zeroing_s).epsilon(1e-12));
  for (Framework f : {Framework::DeepSpeed, Framework::Megatron}) {
    l.framework = f;
    CHECK(timer.evaluate(inputs()).gradient_zeroing_s == 0);
  }
  l.framework = Framework::Zeroplan;
  // ZeRO-2 over 8: the partition once, every unit's bucket each micro-batch,
  // those inside the emulated rank's compute; offloaded, the partition is on the host.
  l.dp = 8;
  l.zero_stage = 2;
  const GradientZeroing z = gradient_zeroing(l, params, static_cast<double>(m.layers) + 2, 0, 2);
  CHECK(z.step_device_bytes == doctest::Approx(params / 8 * 2));
  CHECK(z.backward_device_bytes == doctest::Approx(2 * params * 2));
  CHECK(z.backward_device_launches == 2 * (static_cast<double>(m.layers) + 2));
  const StepTime z2 = timer.evaluate(inputs());
  const TimeEvaluator::EmulatedRank rank = timer.emulated_rank(inputs(), 0);
  CHECK(z2.gradient_zeroing_s > z0.gradient_zeroing_s);
  CHECK(rank.gradient_zeroing_s == doctest::Approx(params / 8 * 2 / hbm + net.eff.kernel_overhead_s).epsilon(1e-6));
  l.offload_optimizer = Offload::Cpu;
  const GradientZeroing off = gradient_zeroing(l, params, static_cast<double>(m.layers) + 2, 0, 2);
  CHECK(off.step_device_bytes == 0);
  CHECK(off.step_host_bytes == doctest::Approx(params / 8 * 4));
  CHECK(off.backward_device_bytes == z.backward_device_bytes);
  // A unit held to the step's end is zeroed once.
  const GradientZeroing held = gradient_zeroing(l, params, static_cast<double>(m.layers) + 2, 1e8, 2);
  CHECK(z.backward_device_bytes - held.backward_device_bytes == doctest::Approx(1e8 * 2));
}
