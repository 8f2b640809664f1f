// Whether a plan's run fits the host's memory, checked before anything is
// allocated: a model or layout too large for the machine is one line (exit
// 2) naming the plan, not std::bad_alloc halfway through building the model
// or the kernel's out-of-memory killer.
#pragma once

#include <cstdint>
#include <string>

#include "cli/plan_file.h"
#include "costmodel/layout.h"

namespace zp {

// MemAvailable of /proc/meminfo in bytes; 0 where it cannot be read.
uint64_t available_host_bytes();

// The host bytes one process of a run of `run` (a runnable_layout) needs:
// the whole model's initial values, which every rank draws before keeping
// its own part (executor/gpt_model.cc, llama_model.cc), plus the larger of
//  - the model's build beside them: the rank's part assembled on the host
//    before it is copied in, and on the CPU backend the rank's whole
//    parameters and gradients it is copied into (ZeRO-2/3 partition them
//    only afterwards, so their rows hold less than the build does);
//  - the cost model's rows for the most loaded rank that live in host
//    memory (all the tensor rows on the CPU backend, the offloaded ones
//    with a GPU).
// Measured on the 2-core VM (2026-12-03, peak RSS of `validate --steps 1`
// at 16 tokens): GPT-2 355M over 8 ZeRO-3 ranks 2.80 GiB against 1.93
// by initial values + rows alone, 2.64 with the build; ZeRO-0 5.85 GiB
// against 6.35.
struct HostNeed {
  uint64_t init_bytes = 0, build_bytes = 0, buffer_bytes = 0;
  uint64_t total() const { return init_bytes + (build_bytes > buffer_bytes ? build_bytes : buffer_bytes); }
};
HostNeed host_need(const PlanFile& p, const Layout& run, bool on_gpu);

// Throws InputError naming `path` when `processes` such processes need more
// than `available` bytes (available_host_bytes() by default; 0: no check).
void check_host_memory(const std::string& path, const PlanFile& p, const Layout& run, bool on_gpu, uint64_t processes,
                       uint64_t available = available_host_bytes());

}  // namespace zp
