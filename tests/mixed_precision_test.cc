// bf16 mixed precision (issue 6): the bf16 models compute what the fp32 ones
// do to bf16's precision, and training with fp32 master weights follows the
// fp32 run; a bf16 checkpoint resumes bitwise. The bytes are the cost
// model's (tests/executor_memory_test.cc runs every layout in both).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "executor/checkpoint.h"
#include "executor/data.h"
#include "executor/data_parallel.h"
#include "executor/gpt_model.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"
#include "test_support.h"
#include "tiny_models.h"

using namespace zp;

namespace {

// ||a - b|| / ||b|| over two flat arrays of any element types.
template <class A, class B>
double relative_l2(const A& a, const B& b) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    const double d = static_cast<double>(static_cast<float>(a[i])) - static_cast<double>(static_cast<float>(b[i]));
    diff += d * d;
    norm += static_cast<double>(static_cast<float>(b[i])) * static_cast<float>(b[i]);
  }
  return std::sqrt(diff / norm);
}

// One forward and backward of the same model in fp32 and bf16 (weights
// rounded from the same initialisation): the loss within 0.5%, the gradients
// within 2% in norm (bf16 keeps 8 significant bits: 0.4% per rounding; the
// tiny models here come out near 0.4%).
template <template <class> class Model, class Config>
void check_close(const Config& config, int vocab, const char* what) {
  Model<float> full(config, 5);
  Model<bf16> half(config, 5);
  REQUIRE(full.params.size() == half.params.size());
  const SyntheticCorpus corpus(vocab, 3);
  const Batch b = corpus.batch(0, 0, 4, 16);
  const float loss_full = full.forward_backward(b.tokens.data(), b.targets.data(), 4, 16);
  const float loss_half = half.forward_backward(b.tokens.data(), b.targets.data(), 4, 16);
  const double grad_error = relative_l2(half.grads, full.grads);
  MESSAGE(std::string(what) << ": loss fp32 " << loss_full << ", bf16 " << loss_half << "; gradient difference " << grad_error * 100
               << "% in norm");
  CHECK(std::fabs(loss_half - loss_full) < 0.005 * loss_full);
  CHECK(grad_error < 0.02);
  CHECK(grad_error > 0);  // bf16 really rounds
  // The saved activations are half the bytes, less the fp32 norm statistics and token ids.
  CHECK(half.activation_bytes() < 0.6 * static_cast<double>(full.activation_bytes()));
}

// Steps of the trainer on the synthetic corpus; returns the losses.
template <class Model, class Config>
std::vector<float> train(const Config& config, int zero, int steps, const std::string& save = "",
                         const std::string& resume = "", int first = 0) {
  Model model(config, 9);
  LoopbackCommunicator alone(0, 1);
  AdamConfig adam;
  adam.lr = 5e-3f;
  DataParallelTrainer<Model> trainer(model, alone, zero, adam);
  if (!resume.empty()) trainer.restore(load_checkpoint(resume));
  const SyntheticCorpus corpus(32, 5);
  std::vector<float> losses;
  for (int s = first; s < first + steps; ++s) {
    const Batch b = corpus.batch(static_cast<uint64_t>(s), 0, 4, 16);
    losses.push_back(trainer.step(b.tokens.data(), b.targets.data(), 2, 16, 2));
  }
  if (!save.empty()) save_checkpoint(save, trainer.state());
  return losses;
}

float mean(const std::vector<float>& v, size_t from, size_t count) {
  float s = 0;
  for (size_t i = from; i < from + count; ++i) s += v[i];
  return s / static_cast<float>(count);
}

}  // namespace

TEST_CASE("bf16 models: the fp32 loss and gradients to bf16's precision, half the activation bytes") {
  check_close<GptModel>(gpt_config(test::tiny_gpt(32, 16, 2, 2, 32)), 32, "GPT-2 style");
  check_close<LlamaModel>(llama_config(test::tiny_llama(32)), 32, "Llama style");
}

TEST_CASE("bf16 mixed-precision training follows fp32 training (ZeRO 0 and 3, fp32 master weights)") {
  const GptConfig config = gpt_config(test::tiny_gpt(32, 16, 2, 2, 32));
  const std::vector<float> full = train<GptModel<float>>(config, 0, 40);
  for (int zero : {0, 3}) {
    const std::vector<float> half = train<GptModel<bf16>>(config, zero, 40);
    const float early = mean(half, 0, 5), late = mean(half, 35, 5), late_full = mean(full, 35, 5);
    MESSAGE("ZeRO-" << zero << ": bf16 mean loss of steps 0-4 " << early << ", of steps 35-39 " << late << " (fp32 "
                    << late_full << ")");
    CHECK(late < 0.9f * early);
    CHECK(std::fabs(late - late_full) < 0.02f * late_full);
  }
}

TEST_CASE("bf16 checkpoint: stop and resume gives the same losses bitwise (the master weights travel)") {
  const LlamaConfig config = llama_config(test::tiny_llama(32));
  const std::vector<float> straight = train<LlamaModel<bf16>>(config, 1, 6);
  const std::string path = "/tmp/zp_mixed_checkpoint_test.bin";
  train<LlamaModel<bf16>>(config, 1, 3, path);
  const std::vector<float> resumed = train<LlamaModel<bf16>>(config, 1, 3, "", path, 3);
  std::remove(path.c_str());
  for (int i = 0; i < 3; ++i) CHECK(resumed[static_cast<size_t>(i)] == straight[static_cast<size_t>(3 + i)]);
  // An fp32 run cannot take a bf16 checkpoint (it has master weights).
  train<LlamaModel<bf16>>(config, 1, 1, path);
  CHECK_THROWS_AS(train<LlamaModel<float>>(config, 1, 1, "", path), std::runtime_error);
  std::remove(path.c_str());
}
