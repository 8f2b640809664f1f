// cli/host_memory: a run's host memory is checked against the machine before
// anything is allocated, so a model too large for it is one line, not
// std::bad_alloc or the out-of-memory killer.
#include <doctest/doctest.h>

#include <stdexcept>

#include "cli/host_memory.h"
#include "models/input_error.h"
#include "models/param_count.h"
#include "test_support.h"

using namespace zp;

namespace {

PlanFile tiny_plan(Precision precision) {
  PlanFile p;
  p.model = test::catalog().resolve_model(std::string(ZP_TEST_DATA) + "/models/tiny-gpt.json");
  p.layout.seq_len = 32;
  p.layout.precision = precision;
  p.layout.emulated = true;
  return p;
}

}  // namespace

TEST_CASE("host need: every process draws the whole model's initial values; the CPU backend holds every tensor row") {
  const PlanFile bf = tiny_plan(Precision::Bf16);
  const uint64_t params = count_params(bf.model).total;
  const HostNeed cpu = host_need(bf, bf.layout, false);
  CHECK(cpu.init_bytes == 2 * params);
  CHECK(host_need(tiny_plan(Precision::Fp32), tiny_plan(Precision::Fp32).layout, false).init_bytes == 4 * params);
  // bf16 weights and gradients, fp32 master weights and two moments: at least 16 bytes a parameter.
  CHECK(cpu.buffer_bytes >= 16 * params);
  // On a GPU nothing but offloaded rows lives on the host ...
  CHECK(host_need(bf, bf.layout, true).buffer_bytes == 0);
  // ... and ZeRO-Offload puts the fp32 master weights and moments there (12 bytes a parameter, dp 1).
  PlanFile offload = bf;
  offload.layout.zero_stage = 1;
  offload.layout.offload_optimizer = Offload::Cpu;
  CHECK(host_need(offload, offload.layout, true).buffer_bytes >= 12 * params);
  // The model is built whole before ZeRO-3 partitions it: on the CPU
  // backend its host copy, parameters and gradients (3 x 2 bytes a
  // parameter at bf16, dp 1's rank holding all of them) beside the initial
  // values, more than the partitioned rows of 64 ranks hold.
  PlanFile z3 = bf;
  z3.model = test::catalog().resolve_model("gpt2-355m");  // large beside the backends' fixed scratch
  const uint64_t z3_params = count_params(z3.model).total;
  z3.layout.dp = 64;
  z3.layout.zero_stage = 3;
  const HostNeed built = host_need(z3, z3.layout, false);
  CHECK(built.build_bytes >= 3 * 2 * z3_params);
  CHECK(built.build_bytes <= 3 * 2 * z3_params * 11 / 10);  // vocabulary padding at most
  CHECK(built.buffer_bytes < built.build_bytes);
  CHECK(built.total() == built.init_bytes + built.build_bytes);
  CHECK(host_need(z3, z3.layout, true).build_bytes == built.build_bytes / 3);  // on a GPU only the host copy
  // Unpartitioned, the rows hold more than the build: they decide.
  CHECK(cpu.total() == cpu.init_bytes + cpu.buffer_bytes);
}

TEST_CASE("check_host_memory refuses what does not fit, naming the plan, and passes what does") {
  const PlanFile p = tiny_plan(Precision::Bf16);
  const uint64_t need = host_need(p, p.layout, false).total();
  CHECK_NOTHROW(check_host_memory("plan.json", p, p.layout, false, 2, 2 * need));
  CHECK_NOTHROW(check_host_memory("plan.json", p, p.layout, false, 2, 0));  // unknown: no check
  try {
    check_host_memory("plan.json", p, p.layout, false, 2, 2 * need - 1);
    FAIL("expected a refusal");
  } catch (const InputError& e) {
    const std::string what = e.what();
    CHECK(what.rfind("plan.json: the run needs about", 0) == 0);
    CHECK(what.find("(2 processes x (") != std::string::npos);
    CHECK(what.find("available") != std::string::npos);
  }
  CHECK(available_host_bytes() > 0);  // Linux's /proc/meminfo
}
