#include "costmodel/layout.h"

namespace zp {

const char* to_string(Offload v) {
  switch (v) {
    case Offload::None: return "none";
    case Offload::Cpu: return "cpu";
    case Offload::Nvme: return "nvme";
  }
  return "?";
}
const char* to_string(Recompute v) {
  switch (v) {
    case Recompute::None: return "none";
    case Recompute::Selective: return "selective";
    case Recompute::Full: return "full";
  }
  return "?";
}
const char* to_string(Precision v) {
  switch (v) {
    case Precision::Bf16: return "bf16";
    case Precision::Fp16: return "fp16";
    case Precision::Fp32: return "fp32";
  }
  return "?";
}
const char* to_string(Optimizer v) { return v == Optimizer::Adam ? "adam" : "sgd"; }
const char* to_string(Framework v) {
  switch (v) {
    case Framework::Zeroplan: return "zeroplan";
    case Framework::DeepSpeed: return "deepspeed";
    case Framework::Megatron: return "megatron";
  }
  return "?";
}
const char* to_string(Schedule v) {
  switch (v) {
    case Schedule::OneFOneB: return "1f1b";
    case Schedule::GPipe: return "gpipe";
    case Schedule::Interleaved: return "interleaved";
  }
  return "?";
}
const char* to_string(Attention v) { return v == Attention::Flash ? "flash" : "materialized"; }

std::string describe(const Layout& l) {
  std::string s = "dp" + std::to_string(l.dp) + " tp" + std::to_string(l.tp) + " pp" + std::to_string(l.pp);
  if (l.vpp > 1) s += " vpp" + std::to_string(l.vpp);
  if (l.first_stage_layers || l.last_stage_layers) {
    s += " split" + std::to_string(l.first_stage_layers) + "/" + std::to_string(l.last_stage_layers);
  }
  if (l.ep > 1) s += " ep" + std::to_string(l.ep);
  if (l.sequence_parallel) s += " sp";
  s += " zero" + std::to_string(l.zero_stage);
  s += " mb" + std::to_string(l.micro_batch) + " ga" + std::to_string(l.grad_accum);
  s += " seq" + std::to_string(l.seq_len);
  s += std::string(" ") + to_string(l.precision);
  if (l.recompute != Recompute::None) s += std::string(" recompute-") + to_string(l.recompute);
  if (l.offload_optimizer != Offload::None) s += std::string(" opt-offload-") + to_string(l.offload_optimizer);
  if (l.offload_param != Offload::None) s += std::string(" param-offload-") + to_string(l.offload_param);
  if (l.delayed_update) s += " delayed-update";
  if (l.attention == Attention::Materialized) s += " materialized-attention";  // flash is the default
  s += std::string(" [") + to_string(l.framework) + "]";
  return s;
}

}  // namespace zp
