// Every rejection check_layout makes, with its sentence.
#include <doctest/doctest.h>

#include "test_support.h"

using namespace zp;

namespace {

std::string why(const char* model, const char* gpu, uint64_t gpus, const Layout& l) {
  return test::evaluate(model, gpu, gpus, l).why_not;
}

bool says(const std::string& why_not, const char* text) { return why_not.find(text) != std::string::npos; }

}  // namespace

TEST_CASE("valid layouts pass") {
  Layout l;
  l.dp = 8;
  CHECK(why("llama-3.1-8b", "H100-80GB", 8, l).empty());
  l.dp = 2;
  l.tp = 4;
  l.sequence_parallel = true;
  l.recompute = Recompute::Selective;
  CHECK(why("llama-3.1-8b", "H100-80GB", 8, l).empty());
}

TEST_CASE("uneven pipeline splits follow Megatron-Core's rule") {
  Layout l;
  l.dp = 1;
  l.pp = 4;
  l.tp = 2;
  l.first_stage_layers = 7;
  l.last_stage_layers = 7;  // 32 - 14 = 18 over 2 stages between: 9 each
  CHECK(why("llama-3.1-8b", "H100-80GB", 8, l).empty());
  l.last_stage_layers = 6;  // 19 left for 2 stages
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 8, l), "must divide evenly"));
  l.pp = 1;
  l.tp = 8;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 8, l), "needs pp >= 2"));
  l.pp = 2;
  l.tp = 4;
  l.first_stage_layers = 20;
  l.last_stage_layers = 12;
  CHECK(why("llama-3.1-8b", "H100-80GB", 8, l).empty());
  l.vpp = 2;
  l.schedule = Schedule::Interleaved;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 8, l), "cannot be combined with interleaving"));
}

TEST_CASE("each rejection says which constraint failed") {
  Layout l;
  l.dp = 4;
  CHECK(says(why("gpt2-124m", "H100-80GB", 8, l), "does not equal --gpus 8"));
  l = Layout{};
  l.tp = 8;
  CHECK(says(why("gpt2-1.5b", "H100-80GB", 8, l), "tp 8 does not divide the 25 attention heads"));
  l.tp = 16;
  l.dp = 1;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 16, l), "does not divide the 8 KV heads"));
  l = Layout{};
  l.pp = 64;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 64, l), "pp 64 is larger than the 32 layers"));
  l = Layout{};
  l.tp = 2;
  l.sequence_parallel = true;
  l.seq_len = 1023;
  CHECK(says(why("gpt2-124m", "H100-80GB", 2, l), "sequence parallel needs tp 2 to divide --seq 1023"));
  l = Layout{};
  l.pp = 4;
  l.vpp = 3;
  l.schedule = Schedule::Interleaved;
  l.grad_accum = 8;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 4, l), "pp x vpp = 12 to divide the 32 layers"));
  l.vpp = 2;
  l.grad_accum = 6;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 4, l), "to be a multiple of pp 4"));
  l = Layout{};
  l.vpp = 2;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 1, l), "vpp > 1 needs --schedule interleaved"));
  l = Layout{};
  l.ep = 2;
  l.dp = 2;
  CHECK(says(why("llama-3.1-8b", "H100-80GB", 2, l), "ep > 1 needs a mixture-of-experts model"));
  l.dp = 6;
  l.ep = 4;
  CHECK(says(why("mixtral-8x7b", "H100-80GB", 6, l), "ep 4 must divide dp 6"));
  l = Layout{};
  l.zero_stage = 2;
  l.offload_param = Offload::Cpu;
  CHECK(says(why("llama-3.2-1b", "H100-80GB", 1, l), "parameter offload needs ZeRO stage 3"));
  l = Layout{};
  l.offload_optimizer = Offload::Cpu;
  CHECK(says(why("llama-3.2-1b", "H100-80GB", 1, l), "optimizer offload needs ZeRO stage 1"));
  l = Layout{};
  CHECK(says(why("llama-3.2-1b", "V100-32GB", 1, l), "no bf16 support"));
  l = Layout{};
  l.framework = Framework::Megatron;
  l.zero_stage = 3;
  CHECK(says(why("llama-3.2-1b", "H100-80GB", 1, l), "Megatron-LM has no ZeRO stage 2/3"));
  l = Layout{};
  l.framework = Framework::DeepSpeed;
  l.pp = 2;
  l.zero_stage = 2;
  CHECK(says(why("llama-3.2-1b", "H100-80GB", 2, l), "ZeRO stage 0 or 1 only"));
  l = Layout{};
  l.recompute_layers = 2;
  CHECK(says(why("llama-3.2-1b", "H100-80GB", 1, l), "need --recompute full"));
  l = Layout{};
  l.seq_len = 4096;
  CHECK(says(why("gpt2-124m", "H100-80GB", 1, l), "exceeds the model's 1024 learned positions"));
  l = Layout{};
  l.micro_batch = 1u << 20;
  l.seq_len = 1u << 24;
  CHECK(says(why("llama-3.1-405b", "H100-80GB", 1, l), "overflow 64 bits"));
}
