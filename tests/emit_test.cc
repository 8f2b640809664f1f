// Emitted launch configurations: golden files for each format (regenerate
// with ZP_UPDATE_GOLDEN=1 after an intended change, and review the diff),
// DeepSpeed's batch-size rule for every layout, and every DeepSpeed key one
// its documentation lists.
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <sstream>

#include "models/json_file.h"
#include "planner/emit.h"
#include "test_support.h"

using namespace zp;

namespace {

struct Emitted {
  std::vector<EmittedFile> files;
};

std::vector<EmittedFile> emit(const std::string& format, const char* model_name, const char* gpu, uint64_t gpus,
                              const Layout& l) {
  const ModelSpec model = test::catalog().resolve_model(model_name);
  const ModelShape shape = make_shape(model);
  const Cluster c = make_cluster(test::catalog(), gpu, "", gpus);
  const ClusterShape cs = make_cluster_shape(c);
  REQUIRE(check_layout(shape, l, cs, gpus).empty());
  const MemoryResult m = evaluate_memory({shape, l, cs, resolve_options({}, l)});
  const Network net = make_network(c, Catalog::builtin_data_dir());
  const StepTime t = evaluate_time({shape, l, c.gpu, c.node, net});
  return emit_config(format, {model, c, l, m, t});
}

void check_golden(const std::string& name, const std::string& content) {
  const std::string path = std::string(ZP_TEST_DATA) + "/golden/" + name;
  if (std::getenv("ZP_UPDATE_GOLDEN")) {
    std::ofstream(path) << content;
    return;
  }
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "missing golden file " << path << " (run with ZP_UPDATE_GOLDEN=1)");
  std::stringstream golden;
  golden << in.rdbuf();
  CAPTURE(name);
  CHECK(content == golden.str());
}

Layout zero3_offload() {
  Layout l;
  l.dp = 16;
  l.zero_stage = 3;
  l.offload_optimizer = Offload::Cpu;
  l.offload_param = Offload::Nvme;
  l.recompute = Recompute::Full;
  l.micro_batch = 2;
  l.grad_accum = 4;
  l.seq_len = 4096;
  l.framework = Framework::DeepSpeed;
  return l;
}

Layout megatron_3d() {
  Layout l;
  l.tp = 8;
  l.pp = 4;
  l.vpp = 2;
  l.dp = 2;
  l.schedule = Schedule::Interleaved;
  l.sequence_parallel = true;
  l.recompute = Recompute::Selective;
  l.zero_stage = 1;
  l.micro_batch = 1;
  l.grad_accum = 64;
  l.seq_len = 8192;
  l.framework = Framework::Megatron;
  return l;
}

}  // namespace

TEST_CASE("golden: DeepSpeed ds_config.json, hostfile and launcher") {
  const auto files = emit("deepspeed", "llama-3.1-8b", "H100-80GB", 16, zero3_offload());
  REQUIRE(files.size() == 3);
  check_golden("deepspeed_ds_config.json", files[0].content);
  check_golden("deepspeed_hostfile", files[1].content);
  check_golden("deepspeed_launch.sh", files[2].content);
}

TEST_CASE("golden: Megatron-LM arguments, torchrun, the zeroplan plan file") {
  check_golden("megatron_launch.sh", emit("megatron", "llama-3.1-70b", "H100-80GB", 64, megatron_3d())[0].content);
  check_golden("torchrun_launch.sh", emit("torchrun", "llama-3.1-70b", "H100-80GB", 64, megatron_3d())[0].content);
  const std::string plan = emit("zeroplan", "llama-3.1-70b", "H100-80GB", 64, megatron_3d())[0].content;
  check_golden("zeroplan_plan.json", plan);
  const Json j = parse_json_text(plan, "plan.json");
  CHECK(j["schema"] == "zeroplan.plan");
  CHECK(j["layout"]["pp"] == 4);
}

TEST_CASE("DeepSpeed: train_batch_size = micro x accumulation x dp, and only documented keys, for many layouts") {
  std::mt19937 rng(3);
  const std::vector<std::string>& known = deepspeed_known_keys();
  std::function<void(const Json&)> check_keys = [&](const Json& j) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      CAPTURE(it.key());
      CHECK(std::find(known.begin(), known.end(), it.key()) != known.end());
      if (it->is_object()) check_keys(*it);
    }
  };
  int checked = 0;
  for (int i = 0; i < 60; ++i) {
    Layout l;
    l.dp = 1u << (rng() % 4);
    l.micro_batch = 1 + rng() % 8;
    l.grad_accum = 1 + rng() % 16;
    l.zero_stage = static_cast<uint8_t>(rng() % 4);
    l.framework = Framework::DeepSpeed;
    l.precision = rng() % 2 ? Precision::Bf16 : Precision::Fp16;
    l.recompute = static_cast<Recompute>(rng() % 3);
    if (l.zero_stage > 0) l.offload_optimizer = static_cast<Offload>(rng() % 3);
    if (l.zero_stage == 3) l.offload_param = static_cast<Offload>(rng() % 3);
    l.seq_len = 1024;
    const auto files = emit("deepspeed", "gpt2-355m", "H100-80GB", l.dp, l);
    const Json ds = parse_json_text(files[0].content, "ds_config.json");
    CHECK(ds["train_batch_size"].get<uint64_t>() ==
          ds["train_micro_batch_size_per_gpu"].get<uint64_t>() * ds["gradient_accumulation_steps"].get<uint64_t>() * l.dp);
    check_keys(ds);
    ++checked;
  }
  CHECK(checked == 60);
}

TEST_CASE("Megatron-LM: every emitted flag is one of its arguments, for many layouts") {
  std::mt19937 rng(5);
  const std::vector<std::string>& known = megatron_known_args();
  for (int i = 0; i < 40; ++i) {
    Layout l;
    l.tp = 1u << (rng() % 4);
    l.pp = 1u << (rng() % 3);
    l.dp = 1;
    l.sequence_parallel = rng() % 2;
    l.recompute = static_cast<Recompute>(rng() % 3);
    l.zero_stage = static_cast<uint8_t>(rng() % 2);
    l.grad_accum = 4 * l.pp;
    l.framework = Framework::Megatron;
    l.precision = static_cast<Precision>(rng() % 3);
    const char* model = rng() % 2 ? "mixtral-8x7b" : "gpt2-1.5b";
    if (std::string(model) == "gpt2-1.5b") {
      l.tp = 1;
      l.seq_len = 1024;
    }
    const auto files = emit("megatron", model, "H100-80GB", uint64_t{l.tp} * l.pp, l);
    std::istringstream in(files[0].content);
    std::string word;
    while (in >> word) {
      if (word.rfind("--", 0) != 0 || word.find("--nnodes") == 0 || word.find("--nproc") == 0 ||
          word.find("--node_rank") == 0 || word.find("--rdzv") == 0) {
        continue;
      }
      CAPTURE(word);
      CHECK(std::find(known.begin(), known.end(), word) != known.end());
    }
  }
}
