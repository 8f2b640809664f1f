// Megatron-style tensor parallelism's collective pieces, shared by the
// models (Shoeybi et al. 2019; Megatron-LM core/tensor_parallel): the group,
// the all-reduce of a row-parallel product's partial sums, the
// vocabulary-parallel embedding lookup and cross-entropy. With one rank (no
// group) they are the plain lookup and its gradient. The collectives move
// fp32 or bf16 (the cross-entropy's in fp32: CpuBackend promotes bf16 logits).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "executor/backend.h"
#include "executor/communicator.h"
#include "executor/tagged_buffer.h"

namespace zp {

// The tensor-parallel group of a model; null: one rank.
struct TensorParallel {
  Communicator* comm = nullptr;
  // Sequence parallelism (executor/sequence_parallel.h): norms, residuals
  // and biases on 1/t of the tokens each.
  bool sequence_parallel = false;
};

// One rank's share of a vocabulary of V rows over t ranks: each holds
// ceil(V / t) rows (what the cost model's zeroplan accounting shards, and
// DeepSpeed's), the last ones padding where t does not divide V (GPT-2's
// 50,257 over 2); `real` of them are tokens, from `start`. The padding rows
// are zero, never looked up and never in the logits, so their gradients stay
// zero. Throws when a rank would hold no token (V too small for t).
struct VocabShard {
  int rows = 0, real = 0, start = 0;
};
inline uint64_t vocab_shard_rows(uint64_t vocab, uint64_t ranks) { return (vocab + ranks - 1) / ranks; }
// Whether every rank's shard holds a token: the last starts before V.
inline bool vocab_reaches_every_rank(uint64_t vocab, uint64_t ranks) {
  return vocab > (ranks - 1) * vocab_shard_rows(vocab, ranks);
}
inline VocabShard vocab_shard(int vocab, int ranks, int rank) {
  VocabShard s;
  s.rows = static_cast<int>(vocab_shard_rows(static_cast<uint64_t>(vocab), static_cast<uint64_t>(ranks)));
  s.start = rank * s.rows;
  s.real = std::min(s.rows, vocab - s.start);
  if (!vocab_reaches_every_rank(static_cast<uint64_t>(vocab), static_cast<uint64_t>(ranks))) {
    throw std::runtime_error("tensor parallel " + std::to_string(ranks) + ": a vocabulary of " + std::to_string(vocab) +
                             " leaves a rank without tokens");
  }
  return s;
}

template <class T>
void tp_all_reduce(Communicator* comm, T* data, size_t count) {
  if (!comm || comm->size() == 1) return;
  if constexpr (std::is_same_v<T, double>) {
    throw std::runtime_error("tensor parallel runs in fp32 or bf16");
  } else {
    comm->all_reduce_sum(data, count);
  }
}

// Vocabulary-parallel lookup: each rank copies the rows it holds (table rows
// [vocab_start, vocab_start + vocab_local)), zeros elsewhere (every row of
// `out`, N x C, is written), and the sum over the ranks is the embedding. Its backward is
// the backend's embedding_backward: each rank's rows take their tokens'
// gradients.
template <class T>
void vocab_parallel_lookup(Backend<T>& be, Communicator* comm, T* out, const T* table, const int* ids, size_t N, int C,
                           int vocab_start, int vocab_local) {
  be.embedding_forward(out, table, ids, N, C, vocab_start, vocab_local);
  tp_all_reduce(comm, out, N * static_cast<size_t>(C));
}

// Megatron-LM's vocab-parallel cross-entropy (core/tensor_parallel/
// cross_entropy.py): each rank holds V/t logits per token; the row maxima,
// the sums of exponentials and the target logits are combined over the
// ranks, and each rank writes the gradient of the mean loss over its own
// logits. Returns the mean loss.
template <class T>
T vocab_parallel_cross_entropy(Communicator* comm, T* logits, const int* targets, size_t N, int vocab_local, int vocab_start,
                               TrackingAllocator* tracker) {
  const size_t V = static_cast<size_t>(vocab_local), t = static_cast<size_t>(comm->size());
  auto work = [tracker](size_t n) { return make_buffer<T>(tracker, Component::Workspace, n); };
  Buffer<T> local_max = work(N), all_max = work(N * t), sum = work(N), target = work(N);
  for (size_t i = 0; i < N; ++i) local_max[i] = *std::max_element(logits + i * V, logits + (i + 1) * V);
  if constexpr (std::is_same_v<T, float>) comm->all_gather(local_max.data(), all_max.data(), N);
  for (size_t i = 0; i < N; ++i) {
    T m = all_max[i];
    for (size_t r = 1; r < t; ++r) m = std::max(m, all_max[r * N + i]);
    local_max[i] = m;
    const T* l = logits + i * V;
    for (size_t v = 0; v < V; ++v) sum[i] += std::exp(l[v] - m);
    const int row = targets[i] - vocab_start;
    if (row >= 0 && row < vocab_local) target[i] = l[row];
  }
  tp_all_reduce(comm, sum.data(), N);
  tp_all_reduce(comm, target.data(), N);
  T loss = 0;
  for (size_t i = 0; i < N; ++i) {
    const T logz = std::log(sum[i]) + local_max[i];
    loss += logz - target[i];
    T* l = logits + i * V;
    const int row = targets[i] - vocab_start;
    for (size_t v = 0; v < V; ++v) {
      l[v] = (std::exp(l[v] - logz) - (static_cast<int>(v) == row ? T(1) : T(0))) / static_cast<T>(N);
    }
  }
  return loss / static_cast<T>(N);
}

}  // namespace zp
