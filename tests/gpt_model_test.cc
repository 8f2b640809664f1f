// The executor's first model: parameter count equal to the cost model's,
// every gradient against central finite differences in double precision, and
// loss going down with AdamW on a learnable synthetic sequence.
#include <doctest/doctest.h>

#include <chrono>

#include <cmath>
#include <cstdio>
#include <random>
#include <utility>

#include "costmodel/cluster.h"
#include "costmodel/collectives.h"
#include "costmodel/time_model.h"
#include "executor/adamw.h"
#include "executor/checkpoint.h"
#include "executor/data.h"
#include "executor/data_parallel.h"
#include "executor/gpt_model.h"
#include "executor/host_gradient_drain.h"
#include "executor/init_normal.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"
#include "executor/phase_timer.h"
#include "executor/timed_communicator.h"
#include "models/input_error.h"
#include "models/param_count.h"
#include "test_support.h"
#include "tiny_models.h"
#include "tests/worst_error.h"

using namespace zp;

namespace {

// Checks `samples` random parameters' analytic gradients against central
// finite differences; returns the worst relative error.
template <class Model>
double check_gradients(Model& model, const std::vector<int>& tokens, const std::vector<int>& targets, int B, int T,
                       std::mt19937_64& rng, int samples) {
  model.forward_backward(tokens.data(), targets.data(), B, T);
  const std::vector<double> analytic(model.grads.begin(), model.grads.end());
  std::uniform_int_distribution<size_t> pick(0, model.params.size() - 1);
  double worst = 0;
  for (int i = 0; i < samples; ++i) {
    const size_t k = pick(rng);
    const double saved = model.params[k], h = 1e-5;
    model.params[k] = saved + h;
    const double up = model.loss(tokens.data(), targets.data(), B, T);
    model.params[k] = saved - h;
    const double down = model.loss(tokens.data(), targets.data(), B, T);
    model.params[k] = saved;
    const double numeric = (up - down) / (2 * h);
    const double err = std::fabs(numeric - analytic[k]) / std::max(1e-6, std::fabs(numeric) + std::fabs(analytic[k]));
    worst = test::worse(worst, err);
    CAPTURE(k);
    CHECK(err < 1e-5);
  }
  return worst;
}

}  // namespace

TEST_CASE("the executor's parameters are the cost model's count") {
  const ModelSpec m = test::tiny_gpt(50, 16, 3, 4, 32);
  GptModel<float> model(gpt_config(m), 1);
  CHECK(model.params.size() == count_params(m).total);
}

TEST_CASE("initial weights by counter: any range gives the whole sequence's values, N(0, stddev)") {
  const size_t n = size_t{1} << 20;  // past the size where the fill runs on every core
  std::vector<double> whole(n);
  fill_normal(whole.data(), n, 0.02, 7, 0);
  // Odd starts and lengths (a pair split at either end) give the same values.
  for (const auto& [first, count] : {std::pair<size_t, size_t>{1, 3}, {5, 1}, {12345, 999999}, {n - 1, 1}}) {
    std::vector<double> part(count);
    fill_normal(part.data(), count, 0.02, 7, first);
    CAPTURE(first);
    CHECK(std::equal(part.begin(), part.end(), whole.begin() + static_cast<std::ptrdiff_t>(first)));
  }
  double sum = 0, squares = 0, beyond_3_sigma = 0;
  for (double x : whole) {
    sum += x;
    squares += x * x;
    beyond_3_sigma += std::fabs(x) > 0.06 ? 1 : 0;
  }
  const double mean = sum / n, stddev = std::sqrt(squares / n - mean * mean);
  CHECK(std::fabs(mean) < 5 * 0.02 / std::sqrt(static_cast<double>(n)));
  CHECK(std::fabs(stddev - 0.02) < 0.0002);
  CHECK(std::fabs(beyond_3_sigma / n - 0.0027) < 0.0005);  // a normal's tails, not a uniform's
  std::vector<double> other(16);
  fill_normal(other.data(), other.size(), 0.02, 8, 0);
  CHECK_FALSE(std::equal(other.begin(), other.end(), whole.begin()));
}

TEST_CASE("every parameter tensor's gradient matches central finite differences (double)") {
  const ModelSpec m = test::tiny_gpt(7, 6, 2, 2, 8);
  GptModel<double> model(gpt_config(m), 42);
  // Larger weights than GPT-2's 0.02 make every path matter.
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (double& p : model.params) p += normal(rng);
  const int B = 2, T = 5;
  const std::vector<int> tokens = {1, 3, 0, 6, 2, 5, 4, 4, 1, 0};
  const std::vector<int> targets = {3, 0, 6, 2, 5, 4, 4, 1, 0, 2};
  const double worst = check_gradients(model, tokens, targets, B, T, rng, 200);
  MESSAGE("worst relative gradient error over 200 parameters: " << worst);
}

namespace {

// B sequences of T tokens of a 16-token vocabulary where the next token is
// always the current one plus 3: learnable in a few dozen steps.
std::pair<std::vector<int>, std::vector<int>> plus_three_sequences(int B, int T) {
  std::vector<int> tokens(static_cast<size_t>(B) * T), targets(static_cast<size_t>(B) * T);
  for (int b = 0; b < B; ++b) {
    for (int t = 0; t < T; ++t) {
      tokens[static_cast<size_t>(b * T + t)] = (b + 3 * t) % 16;
      targets[static_cast<size_t>(b * T + t)] = (b + 3 * (t + 1)) % 16;
    }
  }
  return {tokens, targets};
}

}  // namespace

TEST_CASE("loss goes down with AdamW on a learnable sequence (fp32)") {
  const ModelSpec m = test::tiny_gpt(16, 16, 2, 2, 32);
  GptModel<float> model(gpt_config(m), 3);
  const int B = 4, T = 16;
  const auto [tokens, targets] = plus_three_sequences(B, T);
  std::vector<float> mom(model.params.size(), 0.0f), var(model.params.size(), 0.0f);
  const float first = model.forward_backward(tokens.data(), targets.data(), B, T);
  float last = first;
  for (int step = 1; step <= 60; ++step) {
    last = model.forward_backward(tokens.data(), targets.data(), B, T);
    adamw_step(model.params.data(), model.grads.data(), 1.0f, mom.data(), var.data(), model.params.size(), step,
               AdamConfig{1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f});
  }
  MESSAGE("loss " << first << " -> " << last);
  CHECK(first == doctest::Approx(std::log(16.0)).epsilon(0.05));
  CHECK(last < 0.2f * first);
}

TEST_CASE("synthetic corpus: deterministic, learnable; checkpoint, stop, resume gives identical losses") {
  const ModelSpec m = test::tiny_gpt(32, 16, 2, 2, 32);
  const SyntheticCorpus corpus(32, 5);
  const Batch a = corpus.batch(3, 0, 4, 16), b = corpus.batch(3, 0, 4, 16);
  CHECK(a.tokens == b.tokens);
  CHECK(corpus.batch(4, 0, 4, 16).tokens != a.tokens);
  AdamConfig adam;
  adam.lr = 5e-3f;
  LoopbackCommunicator alone(0, 1);
  // Ten steps straight through.
  GptModel<float> straight(gpt_config(m), 9);
  DataParallelTrainer<GptModel<float>> t1(straight, alone, 0, adam);
  std::vector<float> losses;
  for (uint64_t s = 0; s < 40; ++s) {
    const Batch batch = corpus.batch(s, 0, 4, 16);
    losses.push_back(t1.step(batch.tokens.data(), batch.targets.data(), 4, 16));
  }
  const float early = (losses[0] + losses[1] + losses[2] + losses[3] + losses[4]) / 5;
  const float late = (losses[35] + losses[36] + losses[37] + losses[38] + losses[39]) / 5;
  MESSAGE("synthetic corpus: mean loss of steps 0-4 " << early << ", of steps 35-39 " << late);
  CHECK(late < 0.9f * early);
  // Five steps, a checkpoint, a fresh process state, five more.
  const std::string path = "/tmp/zp_checkpoint_test.bin";
  {
    GptModel<float> first(gpt_config(m), 9);
    DataParallelTrainer<GptModel<float>> t(first, alone, 0, adam);
    for (uint64_t s = 0; s < 5; ++s) {
      const Batch batch = corpus.batch(s, 0, 4, 16);
      t.step(batch.tokens.data(), batch.targets.data(), 4, 16);
    }
    save_checkpoint(path, t.state());
  }
  GptModel<float> resumed(gpt_config(m), 12345);  // different init: the checkpoint must overwrite it
  DataParallelTrainer<GptModel<float>> t2(resumed, alone, 0, adam);
  t2.restore(load_checkpoint(path));
  for (uint64_t s = 5; s < 10; ++s) {
    const Batch batch = corpus.batch(s, 0, 4, 16);
    CHECK(t2.step(batch.tokens.data(), batch.targets.data(), 4, 16) == losses[s]);  // bitwise
  }
  std::remove(path.c_str());
  CHECK_THROWS_AS(load_checkpoint("/tmp/zp_no_such_checkpoint.bin"), InputError);
}

namespace {

// Full recompute changes where activations live, not the arithmetic: the
// same loss and bitwise the same gradients, with far fewer saved elements.
template <class Model>
void check_recompute(Model& plain, Model& recomputed, int vocab, double max_fraction, bool selective = false) {
  if (selective) {
    recomputed.set_selective_recompute(true);
  } else {
    recomputed.set_recompute(true);
  }
  const int B = 2, T = 8;
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 7) % vocab;
    targets[i] = (i * 7 + 3) % vocab;
  }
  const double a = plain.forward_backward(tokens.data(), targets.data(), B, T);
  const double b = recomputed.forward_backward(tokens.data(), targets.data(), B, T);
  CHECK(a == b);
  CHECK(host_copy(plain.grads) == host_copy(recomputed.grads));  // bitwise: the same operations in the same order
  CHECK(static_cast<double>(recomputed.activation_bytes()) < max_fraction * static_cast<double>(plain.activation_bytes()));
}

}  // namespace

TEST_CASE("full recompute: identical gradients, one layer's activations instead of all") {
  const ModelSpec m = test::tiny_gpt(16, 8, 4, 2, 16);
  GptModel<double> plain(gpt_config(m), 21), recomputed(gpt_config(m), 21);
  check_recompute(plain, recomputed, 16, 0.5);
  // The Llama-style model, four layers.
  ModelSpec l = test::tiny_llama(16);
  l.num_layers = 4;
  LlamaModel<double> lplain(llama_config(l), 21), lrecomputed(llama_config(l), 21);
  check_recompute(lplain, lrecomputed, 16, 0.5);
}

TEST_CASE("selective recompute: identical gradients, one layer's softmax output instead of all") {
  // Sequence 8 with 2 heads: each layer's softmax output is 2 x 2 x 8 x 8 of the saved elements.
  const ModelSpec m = test::tiny_gpt(16, 8, 4, 2, 16);
  GptModel<double> plain(gpt_config(m), 21), recomputed(gpt_config(m), 21);
  check_recompute(plain, recomputed, 16, 0.97, true);
  // Exactly three of the four layers' softmax outputs (B x heads x T x T doubles) are no longer kept.
  CHECK(plain.activation_bytes() - recomputed.activation_bytes() == 3u * 2 * 2 * 8 * 8 * sizeof(double));
  ModelSpec l = test::tiny_llama(16);
  l.num_layers = 4;
  LlamaModel<double> lplain(llama_config(l), 21), lrecomputed(llama_config(l), 21);
  check_recompute(lplain, lrecomputed, 16, 0.97, true);
  CHECK(lplain.activation_bytes() - lrecomputed.activation_bytes() == 3u * 2 * 4 * 8 * 8 * sizeof(double));
}

namespace {

// Flash-style attention: the materialised model's loss and gradients (to
// rounding: the softmax is summed in another order), under each recompute
// mode, holding B x heads x T fp32 log-sum-exps per layer instead of the
// B x heads x T x T softmax outputs.
template <class Model, class Config>
void check_flash(const Config& config, int vocab, int layers, int heads) {
  const int B = 2, T = 8;
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 5) % vocab;
    targets[i] = (i * 5 + 2) % vocab;
  }
  for (int mode = 0; mode < 3; ++mode) {
    CAPTURE(mode);
    Model plain(config, 21), flash(config, 21);
    for (Model* m : {&plain, &flash}) {
      m->set_recompute(mode == 2);
      m->set_selective_recompute(mode == 1);
    }
    flash.set_flash_attention(true);
    const double a = plain.forward_backward(tokens.data(), targets.data(), B, T);
    const double b = flash.forward_backward(tokens.data(), targets.data(), B, T);
    CHECK(std::fabs(a - b) < 1e-12);
    const std::vector<double> ga = host_copy(plain.grads), gb = host_copy(flash.grads);
    double worst = 0, largest = 0;
    for (size_t i = 0; i < ga.size(); ++i) {
      worst = test::worse(worst, std::fabs(ga[i] - gb[i]));
      largest = std::max(largest, std::fabs(ga[i]));
    }
    CHECK(worst < 1e-12 * largest);
    CHECK(largest > 0);
    if (mode == 0) {
      // Every layer: the softmax output (B x heads x T x T) gone, its log-sum-exp (B x heads x T) kept.
      const size_t softmax = static_cast<size_t>(B) * heads * T * T, lse = static_cast<size_t>(B) * heads * T;
      CHECK(plain.activation_bytes() - flash.activation_bytes() == layers * (softmax - lse) * sizeof(double));
    }
  }
}

}  // namespace

TEST_CASE("flash-style attention: the materialised model's loss and gradients, a log-sum-exp per row instead of the softmax") {
  const ModelSpec m = test::tiny_gpt(16, 8, 4, 2, 16);
  check_flash<GptModel<double>>(gpt_config(m), 16, 4, 2);
  ModelSpec l = test::tiny_llama(16);
  l.num_layers = 4;
  check_flash<LlamaModel<double>>(llama_config(l), 16, 4, static_cast<int>(l.num_heads));
}

namespace {

// Mean loss after `steps` AdamW steps on one fixed batch.
float train_llama(const ModelSpec& m, const std::vector<int>& tokens, const std::vector<int>& targets, int B, int T,
                  int steps, float* first) {
  LlamaModel<float> model(llama_config(m), 8);
  std::vector<float> mom(model.params.size(), 0.0f);
  std::vector<float> var(model.params.size(), 0.0f);
  *first = model.forward_backward(tokens.data(), targets.data(), B, T);
  float last = *first;
  for (int step = 1; step <= steps; ++step) {
    last = model.forward_backward(tokens.data(), targets.data(), B, T);
    adamw_step(model.params.data(), model.grads.data(), 1.0f, mom.data(), var.data(), model.params.size(), step,
               AdamConfig{1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f});
  }
  return last;
}

}  // namespace

TEST_CASE("Llama-style model: the cost model's count, gradients against finite differences, learning") {
  const ModelSpec m = test::tiny_llama(11);
  LlamaModel<double> model(llama_config(m), 5);
  CHECK(model.params.size() == count_params(m).total);
  std::mt19937_64 rng(17);
  std::normal_distribution<double> normal(0.0, 0.3);
  for (double& p : model.params) p += normal(rng);
  const int B = 2, T = 6;
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 4 + 1) % 11;
    targets[i] = (i * 4 + 5) % 11;
  }
  const double worst = check_gradients(model, tokens, targets, B, T, rng, 200);
  MESSAGE("Llama: worst relative gradient error over 200 parameters: " << worst);
  CHECK_THROWS_AS(llama_config(test::tiny_gpt(7, 6, 2, 2, 8)), InputError);
  // Learning: fp32, AdamW, a fixed batch.
  float first = 0;
  const float last = train_llama(m, tokens, targets, B, T, 60, &first);
  MESSAGE("Llama loss " << first << " -> " << last);
  CHECK(last < 0.3f * first);
}

TEST_CASE("byte corpus: next-byte targets, deterministic, bad files are InputErrors") {
  const std::string path = "/tmp/zp_byte_corpus_test.txt";
  {
    FILE* f = fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    fputs("hello, zeroplan! hello again.", f);
    fclose(f);
  }
  const ByteCorpus corpus(path);
  const Batch b = corpus.batch(2, 0, 3, 8);
  for (int r = 0; r < 3; ++r) {
    for (int t = 0; t + 1 < 8; ++t) CHECK(b.targets[r * 8 + t] == b.tokens[r * 8 + t + 1]);
  }
  CHECK(corpus.batch(2, 0, 3, 8).tokens == b.tokens);
  std::remove(path.c_str());
  CHECK_THROWS_AS(ByteCorpus("/tmp/zp_no_such_text.txt"), InputError);
}

// A timeline whose marks are scripted points in time.
class ScriptedTimeline final : public Timeline {
 public:
  explicit ScriptedTimeline(std::vector<double> at) : at_(std::move(at)) {}
  size_t mark() override { return used_++; }
  double seconds(size_t from, size_t to) override { return at_.at(to) - at_.at(from); }
  void clear() override { used_ = 0; }

 private:
  std::vector<double> at_;
  size_t used_ = 0;
};

class ScriptedDevice final : public Device {
 public:
  std::string name() const override { return "scripted"; }
  void* allocate(uint64_t) override { return nullptr; }
  void release(void*) override {}
  void zero(void*, uint64_t) override {}
  void fill_bytes(void*, unsigned char, uint64_t) override {}
  void copy(void*, const void*, uint64_t) override {}
  std::unique_ptr<Timeline> make_timeline() override {
    return std::make_unique<ScriptedTimeline>(std::vector<double>{0, 1, 3, 6, 10});
  }
};

TEST_CASE("phase timer: spans add to (or come off) their phases when resolved, and the marks start again") {
  ScriptedDevice device;
  PhaseTimer timer(device);
  double a = 0, b = 0;
  const size_t start = timer.mark();      // t = 0
  const size_t one = timer.add(a, start); // t = 1: a gets 1
  const size_t three = timer.add(b, one); // t = 3: b gets 2
  timer.add(a, one, three, -1);           // a gives 2 back
  timer.add(b, start);                    // t = 6: b gets 6
  CHECK(a == 0);                          // nothing until resolved
  timer.resolve();
  CHECK(a == -1);
  CHECK(b == 8);
  const size_t again = timer.mark();  // t = 0 again
  timer.add(a, again);                // t = 1
  timer.resolve();
  CHECK(a == 0);
}

TEST_CASE("the trainer times its phases: each one's span, all within the step") {
  const ModelSpec m = test::tiny_gpt(16, 8, 2, 2, 16);
  const SyntheticCorpus corpus(16, 1);
  const Batch b = corpus.batch(0, 0, 4, 8);  // two micro-batches of two sequences
  for (int zero : {0, 1, 2, 3}) {
    CAPTURE(zero);
    GptModel<float> model(gpt_config(m), 1);
    LoopbackCommunicator emulated(0, 2);
    DataParallelTrainer<GptModel<float>> trainer(model, emulated, zero, AdamConfig{});
    const auto start = std::chrono::steady_clock::now();
    trainer.step(b.tokens.data(), b.targets.data(), 2, 8, 2);
    const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& ph = trainer.last_phases();
    CHECK(ph.forward_s > 0);
    CHECK(ph.backward_s > 0);
    CHECK(ph.optimizer_s > 0);
    CHECK(ph.gradient_sync_s >= 0);
    CHECK(ph.parameter_gather_s >= 0);  // ZeRO-2: the gather's span less the updates inside it
    CHECK(ph.forward_s + ph.backward_s + ph.gradient_sync_s + ph.optimizer_s + ph.parameter_gather_s <= wall_s);
  }
}

TEST_CASE("per-collective timing: the trainer's calls are the time model's data-parallel rows") {
  // 4 emulated ranks, 3 micro-batches: ZeRO-0 all-reduces once, ZeRO-1
  // reduce-scatters once (one bucket holds this model), ZeRO-2 each unit
  // in every micro-batch; ZeRO-1/2 all-gather the parameters once, ZeRO-2
  // unit by unit (zeroplan's time model, costmodel/time_model.cc).
  const ModelSpec spec = test::tiny_gpt(16, 8, 2, 2, 16);
  const ModelShape shape = make_shape(spec);
  const Cluster cluster = make_cluster(test::catalog(), "H100-80GB", "", 4);
  const Network net = make_network(cluster, Catalog::builtin_data_dir());
  const SyntheticCorpus corpus(16, 1);
  const Batch b = corpus.batch(0, 0, 6, 8);
  for (int zero = 0; zero <= 2; ++zero) {
    CAPTURE(zero);
    GptModel<float> model(gpt_config(spec), 1);
    LoopbackCommunicator rank(3, 4);
    TimedCommunicator timed(rank);
    DataParallelTrainer<GptModel<float>> trainer(model, timed, zero, AdamConfig{});
    trainer.step(b.tokens.data(), b.targets.data(), 2, 8, 3);
    Layout l;
    l.dp = 4;
    l.zero_stage = static_cast<uint8_t>(zero);
    l.micro_batch = 2;
    l.grad_accum = 3;
    l.seq_len = 8;
    l.precision = Precision::Fp32;
    const StepTime t = evaluate_time({shape, l, cluster.gpu, cluster.node, net});
    double model_rs = 0, model_ag = 0, model_ar = 0;
    for (int i = 0; i < t.comm_rows; ++i) {
      const std::string what = t.comm[i].collective;
      if (std::string(t.comm[i].dimension) != "dp") continue;
      if (what.rfind("reduce-scatter", 0) == 0) model_rs += t.comm[i].calls;
      if (what.rfind("all-gather", 0) == 0) model_ag += t.comm[i].calls;
      if (what.rfind("all-reduce", 0) == 0) model_ar += t.comm[i].calls;
    }
    CHECK(timed.stats(Collective::ReduceScatter).calls == static_cast<uint64_t>(model_rs));
    CHECK(timed.stats(Collective::AllGather).calls == static_cast<uint64_t>(model_ag));
    // The trainer all-reduces the loss (4 bytes) besides the gradients.
    CHECK(timed.stats(Collective::AllReduce).calls == static_cast<uint64_t>(model_ar) + 1);
    if (zero == 1) {
      // The reduce-scatter moves the whole (padded) gradient: the model's buffer, rounded up to 4 equal shards.
      const uint64_t padded = (model.params.size() + 3) / 4 * 4 * sizeof(float);
      CHECK(timed.stats(Collective::ReduceScatter).bytes == padded);
    }
    if (zero == 2) {
      // Each micro-batch moves every unit, each rounded up to 4 equal chunks.
      uint64_t padded = 0;
      for (int u = 0; u < model.num_units(); ++u) padded += (model.unit_size(u) + 3) / 4 * 4 * sizeof(float);
      CHECK(timed.stats(Collective::ReduceScatter).bytes == 3 * padded);
    }
    CHECK(timed.stats(Collective::AllReduce).seconds >= 0);
  }
}

// ZeRO-Offload's delayed parameter update: step t+1 computes on the weights
// of step t-1's update, the update of step t runs beside it on a thread.
template <class T>
void check_delayed_update(int zero, int dp) {
  CAPTURE(zero);
  CAPTURE(dp);
  const ModelSpec m = test::tiny_gpt(16, 16, 2, 2, 32);
  const int B = 4, Tn = 16;
  const auto [tokens, targets] = plus_three_sequences(B, Tn);
  AdamConfig adam;
  adam.lr = 1e-2f;
  struct Run {
    std::vector<float> losses;
    uint64_t main_gradient_bytes = 0, staging_bytes = 0;  // on the host, while the trainer lives
  };
  auto train = [&](bool delayed, int steps) {
    GptModel<T> model(gpt_config(m), 3);
    LoopbackCommunicator rank(0, dp);
    TrackingAllocator host;
    TrainerMemory memory{nullptr, &host, true, false};
    memory.delayed_update = delayed;
    DataParallelTrainer<GptModel<T>> trainer(model, rank, zero, adam, memory);
    Run run;
    for (int s = 0; s < steps; ++s) run.losses.push_back(trainer.step(tokens.data(), targets.data(), 2, Tn, 2));
    trainer.finish_pending();
    CHECK_NOTHROW(trainer.state());
    run.main_gradient_bytes = host.current_bytes(Component::MainGradients);
    run.staging_bytes = host.current_bytes(Component::OffloadStaging);
    return run;
  };
  // (An emulated rank of two does not learn: its collectives are local copies.)
  const Run now_run = train(false, 3), delayed_run = train(true, dp == 1 ? 40 : 4);
  const std::vector<float>&now = now_run.losses, &delayed = delayed_run.losses;
  // Steps 1 and 2 both see the initial weights; step 3 those of the first update.
  CHECK(delayed[0] == now[0]);
  CHECK(delayed[1] == now[0]);
  CHECK(delayed[2] == now[1]);
  CHECK(delayed[3] != now[2]);  // one step stale from here on
  if (dp == 1) {
    MESSAGE("ZeRO-" << zero << " delayed update: loss " << delayed[0] << " -> " << delayed.back());
    CHECK(delayed.back() < 0.3f * delayed[0]);
  }
  // The host holds a second fp32 gradient partition and the updated weights' partition.
  CHECK(now_run.main_gradient_bytes > 0);
  CHECK(delayed_run.main_gradient_bytes == 2 * now_run.main_gradient_bytes);
  CHECK(delayed_run.staging_bytes - now_run.staging_bytes == now_run.main_gradient_bytes / 4 * sizeof(T));
  // ZeRO-2/3 also stage the reduced chunks on their way to the host: two
  // slots of the largest chunk (executor/host_gradient_drain.h).
  size_t largest_chunk = 0;
  {
    GptModel<T> model(gpt_config(m), 3);
    for (int u = 0; u < model.num_units(); ++u) largest_chunk = std::max(largest_chunk, (model.unit_size(u) + dp - 1) / dp);
  }
  const size_t slots = zero >= 2 ? static_cast<size_t>(HostGradientDrain<T>::kSlots) : 0;
  CHECK(now_run.staging_bytes == slots * largest_chunk * sizeof(T));
}

TEST_CASE("delayed parameter update (ZeRO-Offload DPU): one step stale, training still converges") {
  for (int zero = 1; zero <= 3; ++zero) {
    check_delayed_update<float>(zero, 1);
    check_delayed_update<bf16>(zero, 2);
  }
  GptModel<float> model(gpt_config(test::tiny_gpt(16, 16, 2, 2, 32)), 3);
  LoopbackCommunicator alone(0, 1);
  TrainerMemory memory;
  memory.delayed_update = true;  // without offload: refused
  CHECK_THROWS_AS(DataParallelTrainer<GptModel<float>>(model, alone, 1, AdamConfig{}, memory), std::runtime_error);
}
