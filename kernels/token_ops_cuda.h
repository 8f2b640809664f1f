// CUDA kernels of the token-indexed operations (issue 7): embedding and
// position lookups, their gradients, and the fused softmax cross-entropy,
// the device counterparts of CpuBackend::gather_add_rows, scatter_add_rows
// and cross_entropy. Every pointer is device memory; T is float or Bf16
// (fp32 arithmetic, one rounding per stored value).
#pragma once

#include <cstddef>

#include "kernels/ops_cuda.h"

namespace zp::cuda {

// out (N,C) += table[row_of[i]] for every token i (rows < 0 skipped).
template <class T>
void gather_add_rows(T* out, const T* table, const int* row_of, size_t N, int C);

// out (N,C) = table[row_of[i]] for every token i, zeros where row_of[i] < 0:
// the (vocabulary-parallel) embedding lookup, which writes every element, so
// its output is neither read nor zeroed first.
template <class T>
void gather_rows(T* out, const T* table, const int* row_of, size_t N, int C);

// The embedding gradient: for each group g of executor/row_groups.h (device
// copies of order, start, row), table[row[g]] += the sum of rows[order[j]]
// over the group, summed in fp32 in token order, added once.
template <class T>
void scatter_add_rows(T* table, const T* rows, const int* order, const int* start, const int* row, int groups, int C);

// Softmax cross-entropy over logits (N,V) against targets (N): losses[i] =
// logsumexp(row) - row[target] (fp32), and dlogits = (softmax - onehot) / N,
// which may be the logits themselves (the fused in-place form the cost
// model's logits row counts). The mean loss is the losses' mean.
template <class T>
void cross_entropy_forward_backward(T* dlogits, float* losses, const T* logits, const int* targets, int N, int V);

}  // namespace zp::cuda
