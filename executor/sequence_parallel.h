// How a tensor-parallel layer's token rows move between the ranks, with or
// without sequence parallelism (Korthikanti et al. 2022 Sec. 4.2.2;
// Megatron-LM core/tensor_parallel/mappings.py). Without it every rank holds
// every token outside the tensor-parallel regions and a row-parallel
// product's partial sums are all-reduced. With it the norms, residuals and
// biases outside those regions run on this rank's 1/t of the tokens (a
// contiguous block of the flattened batch x sequence rows): before a
// column-parallel product the blocks are all-gathered (Megatron's g), after a
// row-parallel product the partial sums are reduce-scattered (g-bar). The
// two are each other's backward, so the backward passes call the same two
// functions the other way round. The norms' weights see only this rank's
// tokens, so their gradient increments are summed over the group
// (Megatron's allreduce of sequence-parallel parameters' gradients).
#pragma once

#include <cstddef>
#include <type_traits>

#include "executor/communicator.h"
#include "executor/tagged_buffer.h"
#include "executor/tensor_parallel.h"

namespace zp {

template <class T>
struct TokenSplit {
  Communicator* comm = nullptr;  // the tensor-parallel group; null: one rank
  bool sequence_parallel = false;
  // The communicators move fp32 and bf16; double (the finite-difference
  // tests) runs on one rank.
  static constexpr bool kMoves = !std::is_same_v<T, double>;

  bool split() const { return kMoves && sequence_parallel && comm && comm->size() > 1; }
  // The token rows this rank holds outside the tensor-parallel regions, and
  // where its block starts among all `tokens`.
  size_t local(size_t tokens) const { return split() ? tokens / static_cast<size_t>(comm->size()) : tokens; }
  size_t first(size_t tokens) const { return split() ? local(tokens) * static_cast<size_t>(comm->rank()) : 0; }

  // Every rank's rows (local_count elements each) into `all`, for a
  // column-parallel product; without the split the rows themselves.
  const T* gather(const T* rows, Buffer<T>& all, size_t local_count) const {
    if constexpr (kMoves) {
      if (split()) {
        all.resize(local_count * static_cast<size_t>(comm->size()));
        comm->all_gather(rows, all.data(), local_count);
        return all.data();
      }
    }
    (void)all;
    return rows;
  }
  // Partial sums over all tokens (a row-parallel product's output, or a
  // column-parallel product's input gradient) summed over the ranks: this
  // rank's rows reduce-scattered into `mine` (local_count elements), or the
  // whole buffer all-reduced in place.
  T* reduce(T* partial, Buffer<T>& mine, size_t local_count) const {
    if (!split()) {
      tp_all_reduce(comm, partial, local_count);
      return partial;
    }
    mine.resize(local_count);
    reduce_to(partial, mine.data(), local_count);
    return mine.data();
  }
  // The same under the split, into `out`.
  void reduce_to(const T* partial, T* out, size_t local_count) const {
    if constexpr (kMoves) comm->reduce_scatter_sum(partial, out, local_count);
  }
  // A replicated parameter's gradient increment from this rank's tokens,
  // summed over the group (only under the split).
  void sum_replicated(T* increment, size_t count) const {
    if constexpr (kMoves) {
      if (split()) comm->all_reduce_sum(increment, count);
    }
  }
};

}  // namespace zp
