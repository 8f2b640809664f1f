// MpiCommunicator and the data-parallel trainer across real processes: run
// by ctest under `mpirun -np N --oversubscribe` for N = 1, 2, 4 and 8. Every
// rank runs every case; collectives are checked against closed forms of the
// rank numbers, training against one process on the whole batch and the
// cost model's rows.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <numeric>
#include <type_traits>
#include <vector>

#include "costmodel/memory_model.h"
#include "costmodel/model_shape.h"
#include "costmodel/pipeline.h"
#include "executor/poison.h"
#include "executor/data_parallel.h"
#include "executor/loopback_communicator.h"
#include "executor/mpi_communicator.h"
#include "executor/parallel_groups.h"
#include "executor/pipeline_parallel.h"
#include "executor_checks.h"
#include "tiny_models.h"

using namespace zp;

namespace {
MpiCommunicator* g_comm = nullptr;

// `rows` sequences of T tokens with a learnable rule: each target is its
// token shifted by `shift`.
struct TokenBatch {
  std::vector<int> tokens, targets;
};

TokenBatch shifted_batch(int rows, int T, int vocab, int shift) {
  TokenBatch b{std::vector<int>(static_cast<size_t>(rows) * T), std::vector<int>(static_cast<size_t>(rows) * T)};
  for (int i = 0; i < rows * T; ++i) {
    b.tokens[i] = (i * 5 + i / T) % vocab;
    b.targets[i] = (b.tokens[i] + shift) % vocab;
  }
  return b;
}

}  // namespace

TEST_CASE("all-reduce sums every rank's buffer") {
  MpiCommunicator& c = *g_comm;
  const int n = c.size();
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(c.rank() + 1) * static_cast<float>(i % 7);
  c.all_reduce_sum(v.data(), v.size());
  const float ranks = static_cast<float>(n * (n + 1) / 2);
  for (size_t i = 0; i < v.size(); ++i) REQUIRE(v[i] == ranks * static_cast<float>(i % 7));
}

TEST_CASE("reduce-scatter gives each rank its slice of the sum; all-gather puts the slices back") {
  MpiCommunicator& c = *g_comm;
  const int n = c.size();
  const size_t per = 5;
  std::vector<float> in(per * n);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i) + static_cast<float>(c.rank());
  std::vector<float> mine(per);
  c.reduce_scatter_sum(in.data(), mine.data(), per);
  const float rank_sum = static_cast<float>(n * (n - 1) / 2);
  for (size_t j = 0; j < per; ++j) {
    REQUIRE(mine[j] == static_cast<float>(n) * static_cast<float>(c.rank() * per + j) + rank_sum);
  }
  std::vector<float> all(per * n);
  c.all_gather(mine.data(), all.data(), per);
  for (size_t i = 0; i < all.size(); ++i) REQUIRE(all[i] == static_cast<float>(n) * static_cast<float>(i) + rank_sum);
}

TEST_CASE("bf16 collectives: sums of small integers are exact, gathers and transfers move two bytes an element") {
  MpiCommunicator& c = *g_comm;
  const int n = c.size(), r = c.rank();
  const size_t per = 7;
  std::vector<bf16> v(per * static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf16(static_cast<float>((i + static_cast<size_t>(r)) % 5));
  std::vector<bf16> mine(per);
  c.reduce_scatter_sum(v.data(), mine.data(), per);
  c.all_reduce_sum(v.data(), v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    float want = 0;
    for (int k = 0; k < n; ++k) want += static_cast<float>((i + static_cast<size_t>(k)) % 5);
    REQUIRE(static_cast<float>(v[i]) == want);  // at most 4 x 8 = 32: exact in bf16
  }
  for (size_t j = 0; j < per; ++j) REQUIRE(static_cast<float>(mine[j]) == static_cast<float>(v[static_cast<size_t>(r) * per + j]));
  std::vector<bf16> all(per * static_cast<size_t>(n));
  c.all_gather(mine.data(), all.data(), per);
  for (size_t i = 0; i < all.size(); ++i) REQUIRE(static_cast<float>(all[i]) == static_cast<float>(v[i]));
  if (n > 1) {
    std::vector<bf16> out(3, bf16(static_cast<float>(r) + 0.5f)), in(3, bf16(-1.0f));
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    c.send_recv(out.data(), out.size(), next, in.data(), in.size(), prev);
    CHECK(static_cast<float>(in[2]) == static_cast<float>(prev) + 0.5f);
  }
}

TEST_CASE("broadcast and a ring of point-to-point transfers") {
  MpiCommunicator& c = *g_comm;
  const int n = c.size(), r = c.rank();
  std::vector<float> b(3, static_cast<float>(r));
  c.broadcast(b.data(), b.size(), n - 1);
  CHECK(b[2] == static_cast<float>(n - 1));
  if (n > 1) {
    std::vector<float> out(4, static_cast<float>(r)), in(4, -1);
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    if (r % 2 == 0) {
      c.send(out.data(), out.size(), next);
      c.recv(in.data(), in.size(), prev);
    } else {
      c.recv(in.data(), in.size(), prev);
      c.send(out.data(), out.size(), next);
    }
    CHECK(in[0] == static_cast<float>(prev));
  }
  c.barrier();
}

TEST_CASE("exchange: a ring sends both ways at once, large enough that one-by-one blocking sends would wait forever") {
  MpiCommunicator& c = *g_comm;
  const int n = c.size(), r = c.rank();
  if (n == 1) return;
  const int next = (r + 1) % n, prev = (r + n - 1) % n;
  // 1 MiB a message: past any eager limit, so a blocking send waits for its receive.
  const size_t count = size_t{1} << 18;
  std::vector<float> forward(count, static_cast<float>(r)), backward(count, static_cast<float>(100 + r));
  std::vector<float> from_prev(count, -1), from_next(count, -1);
  c.exchange<float>({Communicator::send_to(forward.data(), count, next, 0), Communicator::recv_from(from_prev.data(), count, prev, 0),
                     Communicator::send_to(backward.data(), count, prev, 1), Communicator::recv_from(from_next.data(), count, next, 1)});
  // With two ranks each is the other's next and previous: the tags keep the directions apart.
  CHECK(from_prev.front() == static_cast<float>(prev));
  CHECK(from_prev.back() == static_cast<float>(prev));
  CHECK(from_next.front() == static_cast<float>(100 + next));
  CHECK(from_next.back() == static_cast<float>(100 + next));
  // Some ranks only receive, some only send: rank 0 sends to everyone else.
  std::vector<float> got(4, -1);
  std::vector<Communicator::Transfer> t;
  std::vector<std::vector<float>> outs;
  if (r == 0) {
    for (int q = 1; q < n; ++q) outs.emplace_back(4, static_cast<float>(q * 10));
    for (int q = 1; q < n; ++q) t.push_back(Communicator::send_to(outs[static_cast<size_t>(q - 1)].data(), 4, q));
  } else {
    t.push_back(Communicator::recv_from(got.data(), 4, 0));
  }
  c.exchange<float>(t);
  if (r > 0) CHECK(got[3] == static_cast<float>(r * 10));
  c.barrier();
}

namespace {

struct DpCase {
  bool llama = false;
  int zero = 0;
  bool offload = false;
  Recompute recompute = Recompute::None;
  bool offload_params = false;
};

// Losses of a parallel run against one process: fp32 within 1e-4 (the sums
// run in another order); bf16 within 1e-2 (its sums round to 8 significant
// bits, and in another order on each side).
template <class Model>
constexpr double loss_tolerance() {
  return std::is_same_v<typename Model::Scalar, float> ? 1e-4 : 1e-2;
}

template <class Model>
constexpr Precision precision_of() {
  return std::is_same_v<typename Model::Scalar, float> ? Precision::Fp32 : Precision::Bf16;
}

// One data-parallel layout on this world: the same losses as one rank on the
// whole batch (loss_tolerance), the same
// parameters on every rank afterwards, and each rank's model-state bytes
// equal to the cost model's zeroplan rows for dp = world.
template <class Model, class Config>
void check_layout_trains(const ModelSpec& spec, const Config& config, const DpCase& k) {
  MpiCommunicator& c = *g_comm;
  const int world = c.size(), mb = 2, ga = 2, T = 8, local = mb * ga, B = local * world;
  const int vocab = static_cast<int>(spec.vocab_size);
  auto [tokens, targets] = shifted_batch(B, T, vocab, 2);
  AdamConfig adam;
  adam.lr = 5e-3f;
  Model reference(config, 11);  // one rank, the whole batch, plain data layout
  LoopbackCommunicator alone(0, 1);
  DataParallelTrainer<Model> ref_trainer(reference, alone, 0, adam);
  TrackingAllocator device, host;
  Model model(config, 11, &device);  // same seed: same initial weights on every rank
  model.set_recompute(k.recompute == Recompute::Full);
  model.set_selective_recompute(k.recompute == Recompute::Selective);
  DataParallelTrainer<Model> trainer(model, c, k.zero, adam, TrainerMemory{&device, &host, k.offload, k.offload_params});
  for (int s = 0; s < 4; ++s) {
    const float expected = ref_trainer.step(tokens.data(), targets.data(), mb, T, ga * world);
    const float loss = trainer.step(tokens.data() + c.rank() * local * T, targets.data() + c.rank() * local * T, mb, T, ga);
    CHECK(loss == doctest::Approx(expected).epsilon(loss_tolerance<Model>()));
  }
  std::vector<float> first;
  for (const auto& p : model.params) first.push_back(static_cast<float>(p));
  c.broadcast(first.data(), first.size(), 0);
  double diff = 0;
  for (size_t i = 0; i < first.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(first[i] - static_cast<float>(model.params[i]))));
  }
  CHECK(diff == 0.0);
  Layout l = test::executor_layout(static_cast<uint32_t>(world), 1, 1, mb, ga, T, k.recompute, precision_of<Model>());
  l.zero_stage = static_cast<uint8_t>(k.zero);
  l.offload_optimizer = k.offload ? Offload::Cpu : Offload::None;
  l.offload_param = k.offload_params ? Offload::Cpu : Offload::None;
  test::check_against_rows(device, &host, test::executor_rows(spec, l, 0));
}

}  // namespace

namespace {

// Every data-parallel combination of both models in scalar T (all three
// recompute modes, or none only); returns how many ran.
template <class T>
int check_data_parallel_layouts(bool every_recompute_mode) {
  int cases = 0;
  for (bool llama : {false, true}) {
    for (int zero = 0; zero <= 3; ++zero) {
      for (bool offload : {false, true}) {
        if (offload && zero == 0) continue;
        for (Recompute recompute : {Recompute::None, Recompute::Selective, Recompute::Full}) {
          if (!every_recompute_mode && recompute != Recompute::None) continue;
          for (bool offload_params : {false, true}) {
            if (offload_params && zero != 3) continue;
            const DpCase k{llama, zero, offload, recompute, offload_params};
            CAPTURE(llama);
            CAPTURE(zero);
            CAPTURE(offload);
            CAPTURE(offload_params);
            CAPTURE(std::string(to_string(recompute)));
            if (llama) {
              const ModelSpec spec = test::tiny_llama(13);
              check_layout_trains<LlamaModel<T>>(spec, llama_config(spec), k);
            } else {
              const ModelSpec spec = test::tiny_gpt(13, 8, 2, 2, 16);
              check_layout_trains<GptModel<T>>(spec, gpt_config(spec), k);
            }
            ++cases;
          }
        }
      }
    }
  }
  return cases;
}

}  // namespace

TEST_CASE("every data-parallel layout trains to the single-rank losses and holds the cost model's model states") {
  CHECK(check_data_parallel_layouts<float>(true) == 54);
}

TEST_CASE("bf16 mixed precision: every ZeRO stage and offload trains to the single-rank bf16 losses with the rows") {
  CHECK(check_data_parallel_layouts<bf16>(false) == 18);
}

namespace {

// One model family through every schedule and recompute mode on a pipeline of all the ranks.
template <class Model, class Config>
void check_pipelines(const ModelSpec& spec, const Config& config) {
  MpiCommunicator& c = *g_comm;
  const int p = c.size(), stage = c.rank(), mb = 2, T = 8, m = 6;
  const int B = mb * m, vocab = static_cast<int>(spec.vocab_size);
  const uint64_t layers = spec.num_layers;
  auto [tokens, targets] = shifted_batch(B, T, vocab, 2);
  AdamConfig adam;
  adam.lr = 5e-3f;
  double worst = 0;
  for (PipeSchedule schedule : {PipeSchedule::GPipe, PipeSchedule::OneFOneB}) {
    for (Recompute recompute : {Recompute::None, Recompute::Selective, Recompute::Full}) {
      CAPTURE(static_cast<int>(schedule));
      CAPTURE(std::string(to_string(recompute)));
      Model reference(config, 11);
      LoopbackCommunicator alone(0, 1);
      DataParallelTrainer<Model> ref_trainer(reference, alone, 0, adam);
      Layout l = test::executor_layout(1, 1, static_cast<uint32_t>(p), mb, m, T, recompute);
      l.schedule = schedule == PipeSchedule::GPipe ? Schedule::GPipe : Schedule::OneFOneB;
      TrackingAllocator device;
      Model model(config, 11, &device, pipeline_stage(layers, l, static_cast<uint32_t>(stage)));
      model.set_recompute(recompute == Recompute::Full);
      model.set_selective_recompute(recompute == Recompute::Selective);
      PipelineTrainer<Model> trainer(model, c, schedule, adam, TrainerMemory{&device});
      for (int s = 0; s < 3; ++s) {
        const float expected = ref_trainer.step(tokens.data(), targets.data(), mb, T, m);
        const float loss = trainer.step(tokens.data(), targets.data(), mb, T, m);
        CHECK(loss == doctest::Approx(expected).epsilon(1e-4));
      }
      // The phases of the last step: this stage computed, and the rest of the
      // step (transfers and waits) is what is left of its wall time.
      const auto& ph = trainer.last_phases();
      CHECK(ph.forward_s > 0);
      CHECK(ph.backward_s > 0);
      CHECK(ph.pipeline_transfer_s >= 0);
      // In flight: all m with GPipe, min(p - stage, m) with 1F1B (one with one stage).
      CHECK(trainer.max_in_flight() == (schedule == PipeSchedule::GPipe && p > 1 ? m : std::min(p - stage, m)));
      CAPTURE(stage);
      const MemoryTotals rows = test::executor_rows(spec, l, static_cast<uint32_t>(stage));
      worst = std::max(worst, test::check_against_rows(device, nullptr, rows, static_cast<double>(trainer.peak_activation_bytes())));
      test::check_peak_against_rows(device, rows);  // at the device's peak, byte for byte
    }
  }
  MESSAGE(spec.name << ", stage " << stage << " of " << p << ": worst activation difference " << worst * 100 << "%");
}

}  // namespace

TEST_CASE("pipeline parallel, GPipe and 1F1B: the single-process losses, and each stage holds the cost model's rows") {
  const ModelSpec gpt = test::tiny_gpt(13, 8, 8, 2, 16);  // 8 layers: up to 8 stages
  check_pipelines<GptModel<float>>(gpt, gpt_config(gpt));
  ModelSpec llama = test::tiny_llama(13);
  llama.num_layers = 8;
  check_pipelines<LlamaModel<float>>(llama, llama_config(llama));
}

namespace {

// The interleaved schedule on every rank of the world: v chunks a rank,
// against one process on the whole batch, the chunk passes in flight and
// the activation rows as the cost model has them.
template <class Model, class Config>
void check_interleaved(const ModelSpec& spec, const Config& config, int v, int m) {
  MpiCommunicator& c = *g_comm;
  const int p = c.size(), stage = c.rank(), mb = 2, T = 8;
  const int B = mb * m, vocab = static_cast<int>(spec.vocab_size);
  auto [tokens, targets] = shifted_batch(B, T, vocab, 2);
  AdamConfig adam;
  adam.lr = 5e-3f;
  CAPTURE(v);
  CAPTURE(m);
  for (Recompute recompute : {Recompute::None, Recompute::Full}) {
    CAPTURE(std::string(to_string(recompute)));
    Model reference(config, 11);
    LoopbackCommunicator alone(0, 1);
    DataParallelTrainer<Model> ref_trainer(reference, alone, 0, adam);
    Layout l = test::executor_layout(1, 1, static_cast<uint32_t>(p), mb, static_cast<uint32_t>(m), T, recompute);
    l.schedule = Schedule::Interleaved;
    l.vpp = static_cast<uint32_t>(v);
    TrackingAllocator device;
    std::vector<std::unique_ptr<Model>> chunks;
    std::vector<Model*> views;
    for (int j = 0; j < v; ++j) {
      chunks.push_back(std::make_unique<Model>(config, 11, &device,
                                               pipeline_chunk(spec.num_layers, l, static_cast<uint32_t>(stage), static_cast<uint32_t>(j))));
      chunks.back()->set_recompute(recompute == Recompute::Full);
      views.push_back(chunks.back().get());
    }
    PipelineTrainer<Model> trainer(views, c, PipeSchedule::Interleaved, adam, TrainerMemory{&device});
    for (int s = 0; s < 3; ++s) {
      const float expected = ref_trainer.step(tokens.data(), targets.data(), mb, T, m);
      const float loss = trainer.step(tokens.data(), targets.data(), mb, T, m);
      CHECK(loss == doctest::Approx(expected).epsilon(1e-4));
    }
    const InFlight f = in_flight(l, spec.num_layers / static_cast<uint64_t>(p), spec.num_layers, static_cast<uint32_t>(stage));
    CHECK(trainer.max_in_flight() == static_cast<int>(f.units));
    CAPTURE(stage);
    const MemoryTotals rows = test::executor_rows(spec, l, static_cast<uint32_t>(stage));
    test::check_against_rows(device, nullptr, rows, static_cast<double>(trainer.peak_activation_bytes()));
    // At the device's peak: the chunks' shared workspace, the pipeline's
    // queued buffers and the held output byte for byte, the whole within 1%.
    test::check_peak_against_rows(device, rows);
    // A checkpoint of the chunks goes back into them.
    const CheckpointState saved = trainer.state();
    trainer.restore(saved);
    CHECK(trainer.state().params == saved.params);
  }
}

}  // namespace

TEST_CASE("pipeline parallel, interleaved: the single-process losses, Megatron's chunks in flight, the rows") {
  const int p = g_comm->size();
  if (p < 2 || 8 % (2 * p) != 0) return;  // 8 layers in pp x vpp chunks, vpp >= 2
  const ModelSpec gpt = test::tiny_gpt(13, 8, 8, 2, 16);
  ModelSpec llama = test::tiny_llama(13);
  llama.num_layers = 8;
  for (int m : {p, 2 * p}) {
    check_interleaved<GptModel<float>>(gpt, gpt_config(gpt), 2, m);
    check_interleaved<LlamaModel<float>>(llama, llama_config(llama), 2, m);
  }
  if (8 % (4 * p) == 0) check_interleaved<GptModel<float>>(gpt, gpt_config(gpt), 4, 2 * p);
}

namespace {

// One model family under tensor parallelism over all the ranks, with and
// without sequence parallelism, three recompute modes.
template <class Model, class Config>
void check_tensor_parallel(const ModelSpec& spec, const Config& config) {
  MpiCommunicator& c = *g_comm;
  const int t = c.size(), mb = 2, T = 8, ga = 2;
  const int B = mb * ga, vocab = static_cast<int>(spec.vocab_size);
  auto [tokens, targets] = shifted_batch(B, T, vocab, 3);
  AdamConfig adam;
  adam.lr = 5e-3f;
  double worst = 0;
  for (bool sp : {false, true})
  for (Recompute recompute : {Recompute::None, Recompute::Selective, Recompute::Full}) {
    CAPTURE(sp);
    CAPTURE(std::string(to_string(recompute)));
    LoopbackCommunicator alone(0, 1);
    Model reference(config, 11);
    DataParallelTrainer<Model> ref_trainer(reference, alone, 0, adam);
    TrackingAllocator device;
    Model model(config, 11, &device, PipelineStage{}, TensorParallel{&c, sp});
    model.set_recompute(recompute == Recompute::Full);
    model.set_selective_recompute(recompute == Recompute::Selective);
    // Flash-style attention on this rank's heads, against the materialised reference.
    const bool flash = recompute == Recompute::Selective;
    model.set_flash_attention(flash);
    DataParallelTrainer<Model> trainer(model, alone, 0, adam, TrainerMemory{&device});  // dp = 1: the whole batch
    for (int s = 0; s < 4; ++s) {
      const float expected = ref_trainer.step(tokens.data(), targets.data(), mb, T, ga);
      const float loss = trainer.step(tokens.data(), targets.data(), mb, T, ga);
      CHECK(loss == doctest::Approx(expected).epsilon(1e-4));
    }
    Layout l = test::executor_layout(1, static_cast<uint32_t>(t), 1, mb, ga, T, recompute);
    l.sequence_parallel = sp;
    if (flash) l.attention = Attention::Flash;
    worst = std::max(worst, test::check_against_rows(device, nullptr, test::executor_rows(spec, l, 0)));
  }
  MESSAGE(spec.name << ", tensor parallel " << t << ": worst activation difference " << worst * 100 << "%");
}

}  // namespace

namespace {

// Llama-style, 16 query heads on 8 KV heads, width 32, FFN 64, vocabulary
// 16: splits 8 ways in tensor parallelism (and, with 4 layers, in pipelines).
ModelSpec splittable_llama(uint64_t layers) {
  ModelSpec llama = test::tiny_llama(16);
  llama.num_layers = layers;
  llama.hidden_size = 32;
  llama.num_heads = 16;
  llama.num_kv_heads = 8;
  llama.head_dim = 2;
  llama.ffn_hidden_size = 64;
  return llama;
}

}  // namespace

TEST_CASE("tensor parallel: the single-process losses, and each rank holds the cost model's rows") {
  // 8 heads, width 64: up to 8 ranks. A vocabulary of 15 no rank count
  // divides (GPT-2's 50,257 over 2 ranks in small): each rank holds
  // ceil(15 / t) rows, the last padding ones zero and unused.
  const ModelSpec gpt = test::tiny_gpt(15, 8, 2, 8, 64);
  check_tensor_parallel<GptModel<float>>(gpt, gpt_config(gpt));
  ModelSpec llama = splittable_llama(2);
  llama.vocab_size = 15;
  check_tensor_parallel<LlamaModel<float>>(llama, llama_config(llama));
}

namespace {

// Every dp x tp x pp split of the world (pp up to 4) with ZeRO 0-3 across
// the pipelines; in fp32 also optimizer offload (ZeRO-1) and optimizer and
// parameter offload (ZeRO-3).
struct ZeroCase {
  int stage = 0;
  bool offload = false;
};
template <class Model, class Config>
void check_3d(const ModelSpec& spec, const Config& config) {
  MpiCommunicator& world = *g_comm;
  const int n = world.size(), mb = 2, T = 8, ga = 4, vocab = static_cast<int>(spec.vocab_size);
  AdamConfig adam;
  adam.lr = 5e-3f;
  int layouts = 0;
  std::vector<ZeroCase> zeros = {{0}, {1}, {2}, {3}};
  if (std::is_same_v<typename Model::Scalar, float>) zeros.insert(zeros.end(), {{1, true}, {3, true}});
  for (const ZeroCase zc : zeros) {
    const int zero = zc.stage;
    for (int tp = 1; tp <= n; tp *= 2) {
      for (int pp = 1; tp * pp <= n; pp *= 2) {
        const int dp = n / (tp * pp);
        if (dp * tp * pp != n || pp > 4) continue;
        CAPTURE(spec.name);
        CAPTURE(zero);
        CAPTURE(zc.offload);
        CAPTURE(dp);
        CAPTURE(tp);
        CAPTURE(pp);
        Layout l = test::executor_layout(static_cast<uint32_t>(dp), static_cast<uint32_t>(tp), static_cast<uint32_t>(pp), mb, ga,
                                         T, Recompute::None, precision_of<Model>());
        l.zero_stage = static_cast<uint8_t>(zero);
        l.offload_optimizer = zc.offload ? Offload::Cpu : Offload::None;
        l.offload_param = zc.offload && zero == 3 ? Offload::Cpu : Offload::None;
        l.sequence_parallel = tp > 1 && zero % 2 == 1;  // half the cases, whichever the precision
        CAPTURE(l.sequence_parallel);
        const ParallelGroups g = make_parallel_groups(world, l);
        const int B = mb * ga * dp;
        auto [tokens, targets] = shifted_batch(B, T, vocab, 3);
        LoopbackCommunicator alone(0, 1);
        Model reference(config, 11);
        DataParallelTrainer<Model> ref_trainer(reference, alone, 0, adam);
        const PipelineStage part = pipeline_stage(spec.num_layers, l, static_cast<uint32_t>(g.pp_rank));
        TrackingAllocator device, host;
        Model model(config, 11, &device, part, TensorParallel{tp > 1 ? g.tp.get() : nullptr, l.sequence_parallel});
        PipelineTrainer<Model> trainer(model, *g.pp, PipeSchedule::OneFOneB, adam,
                                       TrainerMemory{&device, &host, zc.offload, zc.offload && zero == 3}, g.dp.get(), zero);
        const size_t slice = static_cast<size_t>(g.dp_rank) * mb * ga * T;
        for (int s = 0; s < 3; ++s) {
          const float expected = ref_trainer.step(tokens.data(), targets.data(), mb, T, ga * dp);
          const float loss = trainer.step(tokens.data() + slice, targets.data() + slice, mb, T, ga);
          CHECK(loss == doctest::Approx(expected).epsilon(loss_tolerance<Model>()));
        }
        const MemoryTotals want = test::executor_rows(spec, l, static_cast<uint32_t>(g.pp_rank));
        test::check_against_rows(device, &host, want, static_cast<double>(trainer.peak_activation_bytes()));
        // (The peak itself is checked where `zeroplan run` runs these
        // layouts, through validate: a pipeline trainer frees each
        // micro-batch's activations, and with these few tokens its step's
        // end, not backward, is its peak.)
        CHECK(trainer.zero3_peak_gathered_bytes() >= want.at(Residence::Gpu, Component::Zero3Gathered));
        ++layouts;
      }
    }
  }
  CHECK(layouts > 0);
}

}  // namespace


TEST_CASE("3D parallelism: every dp x tp x pp split, ZeRO 0-3 and offload, trains to the single-process losses with the rows") {
  const ModelSpec gpt = test::tiny_gpt(16, 8, 4, 8, 64);  // 4 layers, 8 heads, vocabulary 16
  check_3d<GptModel<float>>(gpt, gpt_config(gpt));
  const ModelSpec llama = splittable_llama(4);
  check_3d<LlamaModel<float>>(llama, llama_config(llama));
}

TEST_CASE("3D parallelism in bf16 mixed precision: the single-process bf16 losses, the rows") {
  const ModelSpec gpt = test::tiny_gpt(16, 8, 4, 8, 64);
  check_3d<GptModel<bf16>>(gpt, gpt_config(gpt));
  const ModelSpec llama = splittable_llama(4);
  check_3d<LlamaModel<bf16>>(llama, llama_config(llama));
}

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);
  zp::poison_unwritten() = true;  // as tests/test_main.cc
  MpiCommunicator comm;
  g_comm = &comm;
  doctest::Context context(argc, argv);
  const int failed = context.run();
  // Every rank must agree, so that mpirun exits non-zero if any rank failed.
  int any = failed != 0;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
