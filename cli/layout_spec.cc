#include "cli/layout_spec.h"

#include <cstdlib>

#include "models/input_error.h"

namespace zp {
namespace {

uint32_t number(const std::string& key, const std::string& value) {
  char* end = nullptr;
  const unsigned long v = std::strtoul(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v > (1ul << 24)) {
    throw InputError("layout '" + key + "=" + value + "': expected a non-negative integer");
  }
  return static_cast<uint32_t>(v);
}

Offload offload(const std::string& key, const std::string& v) {
  if (v == "none") return Offload::None;
  if (v == "cpu") return Offload::Cpu;
  if (v == "nvme") return Offload::Nvme;
  throw InputError("layout '" + key + "=" + v + "': expected none, cpu or nvme");
}

}  // namespace

Layout parse_layout_spec(const std::string& spec, Layout l, uint64_t num_gpus, uint64_t global_batch) {
  bool dp_given = false, ga_given = false;
  size_t start = 0;
  while (start < spec.size()) {
    size_t end = spec.find(',', start);
    if (end == std::string::npos) end = spec.size();
    const std::string item = spec.substr(start, end - start);
    start = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) throw InputError("layout '" + item + "': expected key=value");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "dp") { l.dp = number(k, v); dp_given = true; }
    else if (k == "tp") l.tp = number(k, v);
    else if (k == "pp") l.pp = number(k, v);
    else if (k == "vpp") l.vpp = number(k, v);
    else if (k == "first") l.first_stage_layers = number(k, v);
    else if (k == "last") l.last_stage_layers = number(k, v);
    else if (k == "ep") l.ep = number(k, v);
    else if (k == "sp") l.sequence_parallel = number(k, v) != 0;
    else if (k == "mb") l.micro_batch = number(k, v);
    else if (k == "ga") { l.grad_accum = number(k, v); ga_given = true; }
    else if (k == "zero") l.zero_stage = static_cast<uint8_t>(number(k, v));
    else if (k == "opt") l.offload_optimizer = offload(k, v);
    else if (k == "param") l.offload_param = offload(k, v);
    else if (k == "tile") l.tile_factor = number(k, v);
    else if (k == "dpu") l.delayed_update = number(k, v) != 0;  // ZeRO-Offload's delayed parameter update
    else if (k == "recompute") {
      if (v == "none") l.recompute = Recompute::None;
      else if (v == "selective") l.recompute = Recompute::Selective;
      else if (v == "full") l.recompute = Recompute::Full;
      else throw InputError("layout 'recompute=" + v + "': expected none, selective or full");
    } else if (k == "attn") {
      if (v == "flash") l.attention = Attention::Flash;
      else if (v == "materialized") l.attention = Attention::Materialized;
      else throw InputError("layout 'attn=" + v + "': expected flash or materialized");
    } else if (k == "schedule") {
      if (v == "1f1b") l.schedule = Schedule::OneFOneB;
      else if (v == "gpipe") l.schedule = Schedule::GPipe;
      else if (v == "interleaved") l.schedule = Schedule::Interleaved;
      else throw InputError("layout 'schedule=" + v + "': expected 1f1b, gpipe or interleaved");
    } else {
      throw InputError("layout key '" + k + "': expected one of dp tp pp vpp first last ep sp mb ga zero opt param dpu recompute attn schedule tile");
    }
  }
  if (l.vpp > 1 && l.schedule == Schedule::OneFOneB) l.schedule = Schedule::Interleaved;
  if (!dp_given && l.tp > 0 && l.pp > 0 && num_gpus % (uint64_t{l.tp} * l.pp) == 0) {
    l.dp = static_cast<uint32_t>(num_gpus / (uint64_t{l.tp} * l.pp));
  }
  if (!ga_given && global_batch > 0 && l.dp > 0 && l.micro_batch > 0 &&
      global_batch % (uint64_t{l.dp} * l.micro_batch) == 0) {
    l.grad_accum = static_cast<uint32_t>(global_batch / (uint64_t{l.dp} * l.micro_batch));
  }
  return l;
}

}  // namespace zp
