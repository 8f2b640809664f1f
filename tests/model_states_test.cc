// Model-state bytes per parameter and per GPU: the ZeRO table of
// shared/reference/deepspeed-overview.md (sec. 2.1 and 2.3), the ZeRO paper's
// Table 1 (arXiv 1910.02054), and the Megatron-LM and DeepSpeed per-parameter
// figures (formulas.md).
#include <doctest/doctest.h>

#include <cmath>

#include "costmodel/model_states.h"

using namespace zp;

namespace {

Layout zero(int stage, Framework f = Framework::Zeroplan) {
  Layout l;
  l.zero_stage = static_cast<uint8_t>(stage);
  l.framework = f;
  return l;
}

// Sums the rows emit_model_states writes for `params` over `dp` ranks.
struct StateBytes {
  uint64_t gpu = 0, host = 0, nvme = 0;
  MemoryTotals totals;
};
StateBytes states(const Layout& l, uint64_t params, uint64_t dp) {
  TotalsSink sink;
  emit_model_states(l, params, dp, "test", sink);
  StateBytes s;
  s.totals = sink.totals();
  s.gpu = sink.totals().total(Residence::Gpu);
  s.host = sink.totals().total(Residence::Host);
  s.nvme = sink.totals().total(Residence::Nvme);
  return s;
}

// True when `computed` prints as `printed` with `decimals` decimals (the paper
// rounds to the digits it shows).
bool prints_as(double computed, double printed, int decimals) {
  return std::fabs(computed - printed) <= 0.5 * std::pow(10.0, -decimals) + 1e-9;
}

}  // namespace

TEST_CASE("the overview's 7B example: 14 + 14 + 84 = 112 GB unsharded") {
  const uint64_t p = 7000000000ull;
  StateBytes s = states(zero(0), p, 1);
  CHECK(s.totals.at(Residence::Gpu, Component::Weights) == 14000000000ull);
  CHECK(s.totals.at(Residence::Gpu, Component::Gradients) == 14000000000ull);
  CHECK(s.totals.at(Residence::Gpu, Component::MasterWeights) + s.totals.at(Residence::Gpu, Component::OptimizerStates) ==
        84000000000ull);
  CHECK(s.gpu == 112000000000ull);
}

TEST_CASE("the overview's table: bytes per parameter for each stage") {
  for (uint32_t dp : {1u, 2u, 8u, 64u, 1024u}) {
    CAPTURE(dp);
    const double d = dp;
    CHECK(state_bytes_per_param(zero(0), dp) == doctest::Approx(2 + 2 + 12));
    CHECK(state_bytes_per_param(zero(1), dp) == doctest::Approx(2 + 2 + 12 / d));
    CHECK(state_bytes_per_param(zero(2), dp) == doctest::Approx(2 + (2 + 12) / d));
    CHECK(state_bytes_per_param(zero(3), dp) == doctest::Approx((2 + 2 + 12) / d));
  }
  // "DP=64 时，ZeRO-3 可将每参数显存压缩至 ~0.25 Bytes"
  CHECK(state_bytes_per_param(zero(3), 64) == 0.25);
  // Integer rows agree: 64e9 parameters over 64 ranks hold 16e9 bytes per rank.
  CHECK(states(zero(3), 64000000000ull, 64).gpu == 16000000000ull);
}

TEST_CASE("the ZeRO paper's Table 1: 7.5B parameters, per-device GB for Nd = 1..1024") {
  // Columns P_os, P_os+g, P_os+g+p (stages 1, 2, 3), GB = 1e9 bytes.
  // Each cell with the number of decimals the paper prints.
  struct Cell {
    double gb;
    int decimals;
  };
  struct Row {
    uint32_t nd;
    Cell os, osg, osgp;
  } rows[] = {{1, {120, 0}, {120, 0}, {120, 0}},         {4, {52.5, 1}, {41.3, 1}, {30, 0}},
              {16, {35.6, 1}, {21.6, 1}, {7.5, 1}},      {64, {31.4, 1}, {16.6, 1}, {1.88, 2}},
              {256, {30.4, 1}, {15.4, 1}, {0.47, 2}},    {1024, {30.1, 1}, {15.1, 1}, {0.12, 2}}};
  const uint64_t psi = 7500000000ull;
  for (const Row& r : rows) {
    CAPTURE(r.nd);
    CHECK(prints_as(states(zero(1), psi, r.nd).gpu / 1e9, r.os.gb, r.os.decimals));
    CHECK(prints_as(states(zero(2), psi, r.nd).gpu / 1e9, r.osg.gb, r.osg.decimals));
    CHECK(prints_as(states(zero(3), psi, r.nd).gpu / 1e9, r.osgp.gb, r.osgp.decimals));
  }
}

TEST_CASE("other optimizers and precisions change K and the 2 + 2") {
  Layout sgd = zero(0);
  sgd.optimizer = Optimizer::Sgd;
  CHECK(state_bytes_per_param(sgd, 1) == 2 + 2 + 4 + 4);  // master + momentum
  Layout fp32 = zero(0);
  fp32.precision = Precision::Fp32;
  CHECK(state_bytes_per_param(fp32, 1) == 4 + 4 + 8);  // no master copy
  Layout acc = zero(2);
  acc.fp32_grad_accum = true;
  CHECK(state_bytes_per_param(acc, 4) == doctest::Approx(2 + (4 + 12) / 4.0));
}

TEST_CASE("Megatron-LM: 18 or 6 + 12/d (bf16), 20 or 4 + 16/d (fp16), 16 or 8 + 8/d (fp32)") {
  for (uint32_t d : {1u, 8u, 64u}) {
    CAPTURE(d);
    Layout l = zero(0, Framework::Megatron);
    CHECK(state_bytes_per_param(l, d) == 18);
    l.zero_stage = 1;
    CHECK(state_bytes_per_param(l, d) == doctest::Approx(6 + 12.0 / d));
    l.precision = Precision::Fp16;
    CHECK(state_bytes_per_param(l, d) == doctest::Approx(4 + 16.0 / d));
    l.zero_stage = 0;
    CHECK(state_bytes_per_param(l, d) == 20);
    l.precision = Precision::Fp32;
    CHECK(state_bytes_per_param(l, d) == 16);
    l.zero_stage = 1;
    CHECK(state_bytes_per_param(l, d) == doctest::Approx(8 + 8.0 / d));
  }
}

TEST_CASE("DeepSpeed: stage 1 4 + 16/dp, stage 2 2 + 18/dp, stage 3 18/dp") {
  for (uint32_t d : {1u, 8u, 64u}) {
    CAPTURE(d);
    CHECK(state_bytes_per_param(zero(1, Framework::DeepSpeed), d) == doctest::Approx(4 + 16.0 / d));
    CHECK(state_bytes_per_param(zero(2, Framework::DeepSpeed), d) == doctest::Approx(2 + 18.0 / d));
    CHECK(state_bytes_per_param(zero(3, Framework::DeepSpeed), d) == doctest::Approx(18.0 / d));
  }
}

TEST_CASE("offload moves the optimizer side to host or NVMe and parameters (stage 3) with it") {
  const uint64_t p = 1000000000ull;
  Layout l = zero(2);
  l.offload_optimizer = Offload::Cpu;
  StateBytes s = states(l, p, 4);
  CHECK(s.gpu == 2 * p);                                   // bf16 weights only (ZeRO-Offload)
  CHECK(s.host == (4 + 4 + 8) * p / 4);                     // fp32 master, grads, moments
  l.zero_stage = 3;
  l.offload_param = Offload::Nvme;
  l.offload_optimizer = Offload::Nvme;
  s = states(l, p, 4);
  CHECK(s.gpu == 0);
  CHECK(s.nvme == (2 + 4 + 4 + 8) * p / 4);
}

TEST_CASE("partitions are padded: ceil(params / dp) per rank") {
  CHECK(states(zero(3), 10, 4).gpu == 3 * 16);
}
