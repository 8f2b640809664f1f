// `zeroplan models` and `zeroplan gpus`: what the catalog holds.
#include <iostream>

#include "cli/commands.h"
#include "cli/format.h"
#include "models/catalog.h"
#include "models/model_json.h"
#include "models/param_count.h"
#ifdef ZP_HAVE_CUDA
#include "kernels/device_info.h"
#endif

namespace zp {

void add_catalog_commands(CLI::App& app, const GlobalOptions& global) {
  auto* models = app.add_subcommand("models", "List the model catalog");
  models->footer("Example: zeroplan models");
  models->callback([&global]() {
    Catalog catalog = Catalog::load(global.catalog_dirs);
    TextTable t({"model", "family", "params", "layers", "hidden", "heads/kv", "ffn", "vocab", "mlp", "moe"});
    for (const auto& m : catalog.models()) {
      ParamCounts p = count_params(m);
      t.add({m.name, m.family, with_commas(p.total), std::to_string(m.num_layers), std::to_string(m.hidden_size),
             std::to_string(m.num_heads) + "/" + std::to_string(m.num_kv_heads), std::to_string(m.ffn_hidden_size),
             std::to_string(m.vocab_size), to_string(m.mlp),
             m.is_moe() ? std::to_string(m.num_experts) + "x top-" + std::to_string(m.moe_top_k) : "-"});
    }
    t.print(std::cout);
  });

  auto* gpus = app.add_subcommand("gpus", "List the GPU and node catalog");
  gpus->footer("Example: zeroplan gpus    or    zeroplan gpus --local");
  static bool local = false;
  gpus->add_flag("--local", local, "Show this machine's CUDA devices as the driver reports them");
  gpus->callback([&global]() {
    if (local) {
#ifdef ZP_HAVE_CUDA
      std::string error;
      auto devices = query_local_devices(error);
      if (devices.empty()) {
        std::cout << "no CUDA device: " << (error.empty() ? "none found" : error) << "\n";
        return;
      }
      TextTable t({"device", "name", "sm", "SMs", "total", "free"});
      for (size_t i = 0; i < devices.size(); ++i) {
        const auto& d = devices[i];
        t.add({std::to_string(i), d.name, std::to_string(d.sm_major) + std::to_string(d.sm_minor),
               std::to_string(d.multiprocessors), gib(d.total_bytes), gib(d.free_bytes)});
      }
      t.print(std::cout);
#else
      std::cout << "no CUDA device: this zeroplan was built without CUDA (ZP_WITH_CUDA=OFF or no nvcc)\n";
#endif
      return;
    }
    Catalog catalog = Catalog::load(global.catalog_dirs);
    TextTable t({"gpu", "memory", "bf16 dense", "fp32", "HBM", "NVLink/dir", "PCIe/dir", "default node"});
    for (const auto& g : catalog.gpus()) {
      t.add({g.name, gib(g.memory_bytes, 1), fixed(g.bf16_dense_flops / 1e12, 1) + " TFLOP/s",
             fixed(g.fp32_flops / 1e12, 1) + " TFLOP/s", fixed(g.hbm_bytes_per_s / 1e9, 0) + " GB/s",
             fixed(g.nvlink_bytes_per_s / 1e9, 0) + " GB/s", fixed(g.pcie_bytes_per_s / 1e9, 0) + " GB/s",
             g.default_node});
    }
    t.print(std::cout);
    std::cout << "\n";
    TextTable n({"node", "gpus", "nvswitch", "NICs", "host memory", "NVMe"});
    for (const auto& node : catalog.nodes()) {
      n.add({node.name, std::to_string(node.gpus_per_node) + " x " + node.gpu, node.nvswitch ? "yes" : "no",
             std::to_string(node.nics_per_node) + " x " + fixed(node.nic_bytes_per_s * 8 / 1e9, 0) + " Gb/s",
             gib(node.host_memory_bytes, 0), fixed(static_cast<double>(node.nvme_bytes) / 1e12, 2) + " TB"});
    }
    n.print(std::cout);
    std::cout << "(GiB = 2^30 bytes; TB = 1e12 bytes; GB/s = 1e9 bytes/s per direction)\n";
  });
}

}  // namespace zp
