// MpiCommunicator across real processes: run by ctest under
// `mpirun -np 4 --oversubscribe`. Every rank runs every case; results are
// checked against closed forms of the rank numbers.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cmath>
#include <numeric>
#include <vector>

#include "executor/data_parallel.h"
#include "executor/loopback_communicator.h"
#include "executor/mpi_communicator.h"
#include "tiny_models.h"

using namespace zp;

namespace {
MpiCommunicator* g_comm = nullptr;
}

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

TEST_CASE("data parallel with ZeRO 0, 1, 2 trains to the single-rank losses") {
  MpiCommunicator& c = *g_comm;
  const int world = c.size();
  const ModelSpec spec = test::tiny_gpt(13, 8, 2, 2, 16);
  const int B = 4 * world, T = 8, local = B / world;
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 5 + i / T) % 13;
    targets[i] = (tokens[i] + 2) % 13;
  }
  AdamConfig adam;
  adam.lr = 5e-3f;
  // The reference: one rank on the whole batch (a group of one).
  GptModel<float> reference(gpt_config(spec), 11);
  LoopbackCommunicator alone(0, 1);
  DataParallelTrainer<GptModel<float>> ref_trainer(reference, alone, 0, adam);
  std::vector<float> expected;
  for (int s = 0; s < 6; ++s) expected.push_back(ref_trainer.step(tokens.data(), targets.data(), B, T));
  for (int stage = 0; stage <= 2; ++stage) {
    CAPTURE(stage);
    GptModel<float> model(gpt_config(spec), 11);  // same seed: same initial weights on every rank
    DataParallelTrainer<GptModel<float>> trainer(model, c, stage, adam);
    const int* my_tokens = tokens.data() + c.rank() * local * T;
    const int* my_targets = targets.data() + c.rank() * local * T;
    for (int s = 0; s < 6; ++s) {
      const float loss = trainer.step(my_tokens, my_targets, local, T);
      CHECK(loss == doctest::Approx(expected[s]).epsilon(1e-4));
    }
    if (stage > 0 && world > 1) CHECK(trainer.optimizer_state_elements() < 2 * model.params.size());
    // Every rank holds the same parameters after the steps.
    std::vector<float> first(model.params.begin(), model.params.end());
    c.broadcast(first.data(), first.size(), 0);
    double diff = 0;
    for (size_t i = 0; i < first.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(first[i] - model.params[i])));
    CHECK(diff == 0.0);
  }
}

TEST_CASE("data parallel ZeRO-1 trains a Llama-style model to the single-rank losses") {
  MpiCommunicator& c = *g_comm;
  const int world = c.size();
  const ModelSpec spec = test::tiny_llama(13);
  const int B = 2 * world, T = 8, local = B / world;
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) {
    tokens[i] = (i * 3 + i / T) % 13;
    targets[i] = (tokens[i] + 5) % 13;
  }
  AdamConfig adam;
  adam.lr = 5e-3f;
  LlamaModel<float> reference(llama_config(spec), 4);
  LoopbackCommunicator alone(0, 1);
  DataParallelTrainer<LlamaModel<float>> ref_trainer(reference, alone, 0, adam);
  LlamaModel<float> model(llama_config(spec), 4);
  DataParallelTrainer<LlamaModel<float>> trainer(model, c, 1, adam);
  for (int s = 0; s < 4; ++s) {
    const float expected = ref_trainer.step(tokens.data(), targets.data(), B, T);
    const float loss = trainer.step(tokens.data() + c.rank() * local * T, targets.data() + c.rank() * local * T, local, T);
    CHECK(loss == doctest::Approx(expected).epsilon(1e-4));
  }
}

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);
  MpiCommunicator comm;
  g_comm = &comm;
  doctest::Context context(argc, argv);
  const int failed = context.run();
  // Every rank must agree, so that mpirun exits non-zero if any rank failed.
  int any = failed != 0;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
