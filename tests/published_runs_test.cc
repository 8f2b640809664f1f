// The time model against published Megatron-LM runs on A100-80GB (Selene,
// DGX A100 nodes): Korthikanti et al. 2022 Table 5 (seconds per iteration)
// and Narayanan et al. 2021 Table 1 (TFLOP/s per GPU, hardware FLOPs by their
// Eq. 3). Inputs are data: tests/data/published_runs.json. Set
// ZP_PRINT_PUBLISHED=1 to print the comparison table (docs/time-model.md).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "costmodel/time_model.h"
#include "models/json_file.h"
#include "test_support.h"

using namespace zp;

namespace {

struct Row {
  std::string name;
  double published = 0, predicted = 0;
  double error() const { return predicted / published - 1; }
};

const Json& runs() {
  static const Json j = parse_json_file(std::string(ZP_TEST_DATA) + "/published_runs.json");
  return j;
}

StepTime predict(const ModelShape& m, const Layout& l, uint64_t gpus) {
  const Cluster c = make_cluster(test::catalog(), "A100-80GB", "dgx-a100", gpus);
  const Network net = make_network(c, Catalog::builtin_data_dir());
  REQUIRE(check_layout(m, l, make_cluster_shape(c), gpus).empty());
  return evaluate_time({m, l, c.gpu, c.node, net});
}

Layout megatron_layout(uint32_t tp, uint32_t pp, uint32_t vpp, uint64_t gpus, uint64_t batch, uint32_t mb) {
  Layout l;
  l.framework = Framework::Megatron;
  l.precision = Precision::Fp16;
  l.attention = Attention::Materialized;
  l.tp = tp;
  l.pp = pp;
  l.dp = static_cast<uint32_t>(gpus / (uint64_t{tp} * pp));
  l.vpp = vpp;
  l.schedule = vpp > 1 ? Schedule::Interleaved : Schedule::OneFOneB;
  l.micro_batch = mb;
  l.grad_accum = static_cast<uint32_t>(batch / (uint64_t{l.dp} * mb));
  l.seq_len = 2048;
  return l;
}

std::vector<Row> korthikanti_rows() {
  std::vector<Row> rows;
  for (const Json& r : runs()["korthikanti_table5"]) {
    const ModelShape m = make_shape(test::catalog().resolve_model(r["model"].get<std::string>()));
    for (int sel = 0; sel < 2; ++sel) {
      Layout l = megatron_layout(r["tp"], r["pp"], r["vpp"], r["gpus"], r["global_batch"], r["micro_batch"]);
      l.sequence_parallel = sel == 1;
      l.recompute = sel == 1 ? Recompute::Selective : Recompute::Full;
      const StepTime t = predict(m, l, r["gpus"]);
      rows.push_back({r["model"].get<std::string>() + (sel ? " SP+selective" : " full recompute"),
                      r[sel ? "sp_selective_s" : "full_s"].get<double>(), t.total_s});
    }
  }
  return rows;
}

std::vector<Row> narayanan_rows() {
  std::vector<Row> rows;
  for (const Json& r : runs()["narayanan_table1"]) {
    ModelSpec spec = test::catalog().resolve_model("megatron-22b");
    spec.num_layers = r["layers"];
    spec.hidden_size = r["hidden"];
    spec.ffn_hidden_size = 4 * spec.hidden_size;
    spec.num_heads = spec.num_kv_heads = r["heads"];
    spec.head_dim = spec.hidden_size / spec.num_heads;
    const ModelShape m = make_shape(spec);
    const uint32_t pp = r["pp"];
    // Table 1 gives neither micro-batch nor interleaving depth: one sequence
    // per micro-batch and two chunks per stage where there is a pipeline.
    const uint32_t vpp = pp > 1 && spec.num_layers % (2 * pp) == 0 ? 2 : 1;
    Layout l = megatron_layout(r["tp"], pp, vpp, r["gpus"], r["batch"], 1);
    l.recompute = Recompute::Full;
    const StepTime t = predict(m, l, r["gpus"]);
    const double flops = narayanan_eq3_flops(m, 2048, r["batch"]);
    char name[64];
    std::snprintf(name, sizeof name, "%.1fB (t%u p%u, %u GPUs)", r["params_b"].get<double>(),
                  r["tp"].get<uint32_t>(), pp, r["gpus"].get<uint32_t>());
    rows.push_back({name, r["tflops"].get<double>(), flops / t.total_s / r["gpus"].get<double>() / 1e12});
  }
  return rows;
}

void print(const char* title, const std::vector<Row>& rows) {
  if (!std::getenv("ZP_PRINT_PUBLISHED")) return;
  std::printf("\n%s\n\n| run | published | predicted | error |\n|---|---|---|---|\n", title);
  for (const Row& r : rows) std::printf("| %s | %.2f | %.2f | %+.1f%% |\n", r.name.c_str(), r.published, r.predicted, 100 * r.error());
}

}  // namespace

TEST_CASE("Korthikanti et al. 2022 Table 5: seconds per iteration") {
  const std::vector<Row> rows = korthikanti_rows();
  print("Korthikanti et al. 2022 Table 5 (seconds per iteration)", rows);
  double sum = 0, worst = 0;
  for (const Row& r : rows) {
    sum += std::fabs(r.error());
    worst = std::max(worst, std::fabs(r.error()));
  }
  MESSAGE("mean |error| " << 100 * sum / rows.size() << "%, worst " << 100 * worst << "%");
  CHECK(rows.size() == 8);
  CHECK(sum / rows.size() < 0.03);
  CHECK(worst < 0.06);
}

TEST_CASE("Narayanan et al. 2021 Table 1: TFLOP/s per GPU") {
  const std::vector<Row> rows = narayanan_rows();
  print("Narayanan et al. 2021 Table 1 (TFLOP/s per GPU, Eq. 3 hardware FLOPs)", rows);
  for (const Row& r : rows) {
    CAPTURE(r.name);
    CAPTURE(r.predicted);
    CHECK(std::fabs(r.error()) < 0.10);
  }
}
