// Every catalog file loads, lookups suggest close names, user folders override.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "models/hardware.h"
#include "models/input_error.h"
#include "models/json_file.h"
#include "test_support.h"

using namespace zp;

TEST_CASE("the built-in catalog loads every file and has what issue 2 asks for") {
  const Catalog& c = test::catalog();
  CHECK(c.models().size() >= 14);
  for (const char* m : {"gpt2-124m", "gpt2-355m", "gpt2-774m", "gpt2-1.5b", "gpt3-175b", "bloom-176b", "llama-2-7b",
                        "llama-2-13b", "llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b",
                        "mixtral-8x7b", "megatron-1t"}) {
    CAPTURE(m);
    CHECK_NOTHROW(c.resolve_model(m));
  }
  for (const char* g : {"V100-32GB", "A100-40GB", "A100-80GB", "H100-80GB", "H200-141GB", "B200", "L40S", "RTX-4090",
                        "MI300X"}) {
    CAPTURE(g);
    const GpuSpec& spec = c.gpu(g);
    CHECK(spec.memory_bytes > 0);
    CHECK(spec.fp16_dense_flops > 0);
    CHECK(!spec.source.empty());
    // Every GPU's default node exists and holds that GPU.
    CHECK(c.node(spec.default_node).gpu == spec.name);
  }
  for (const char* n : {"dgx-a100", "dgx-h100", "dgx-h200"}) CHECK(c.node(n).gpus_per_node == 8);
  CHECK(c.gpu("A100-80GB").memory_bytes == 80ull << 30);
  CHECK(c.gpu("H100-80GB").nvlink_bytes_per_s == doctest::Approx(450e9));  // 900 GB/s bidirectional
  CHECK(c.node("dgx-h100").nic_bytes_per_s == doctest::Approx(50e9));      // 400 Gb/s
}

TEST_CASE("lookups are case-insensitive and misses suggest the closest names") {
  const Catalog& c = test::catalog();
  CHECK(c.resolve_model("LLAMA-3.1-8B").name == "llama-3.1-8b");
  try {
    c.resolve_model("llama-3.1-8");
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("did you mean llama-3.1-8b") != std::string::npos);
  }
  try {
    c.gpu("H100");
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("H100-80GB") != std::string::npos);
  }
}

TEST_CASE("a user's catalog folder adds and overrides entries; typos in it are caught") {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "zp_catalog_test";
  fs::remove_all(dir);
  fs::create_directories(dir / "gpus");
  fs::create_directories(dir / "models");
  std::ofstream(dir / "gpus" / "mygpu.json") << R"({"name": "MyGPU-96GB", "memory_GiB": 96, "bf16_dense_tflops": 500,
    "fp16_dense_tflops": 500, "fp32_tflops": 50, "hbm_GBps": 3000, "pcie_GBps_per_direction": 32,
    "default_node": "dgx-h100", "source": "test"})";
  Catalog c = Catalog::load_dirs({Catalog::builtin_data_dir(), dir.string()});
  CHECK(c.gpu("mygpu-96gb").memory_bytes == 96ull << 30);
  fs::copy_file(fs::path(ZP_TEST_DATA) / "bad" / "catalog_unknown_field.json", dir / "models" / "typo.json");
  try {
    Catalog::load_dirs({dir.string()});
    FAIL("expected an InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("'hiden_size': unknown field") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("node files: counts held to what machines have, capacities to 64 bits") {
  const Json dgx = parse_json_file(std::string(Catalog::builtin_data_dir()) + "/nodes/dgx-h100.json");
  auto error = [&](const char* field, const Json& value) {
    Json n = dgx;
    n[field] = value;
    try {
      node_from_json(n, "n.json");
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  CHECK(node_from_json(dgx, "n.json").gpus_per_node == 8);
  // 2^63 GPUs a node once made explain and fit loop for ever over the node's GPUs.
  CHECK(error("gpus_per_node", uint64_t{1} << 63) == "n.json: field 'gpus_per_node': expected a positive integer up to 1024");
  CHECK(error("gpus_per_node", uint64_t{576}) == "accepted");  // an NVL576 domain
  CHECK(error("nics_per_node", uint64_t{4096}).find("'nics_per_node': expected a positive integer up to 1024") != std::string::npos);
  CHECK(error("nvme_TB", 1e30) == "n.json: field 'nvme_TB': too large for 64-bit bytes");
}
