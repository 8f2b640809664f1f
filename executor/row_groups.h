// RowGroups: a batch's tokens grouped by the table row (vocabulary entry,
// position) they read, in token order within each group. The CUDA
// embedding backward sums each group's gradient rows in fp32 and adds the
// sum to its table row once, so it needs no atomics, gives the same bits
// every run, and rounds a bf16 table once per element, as the CPU backend
// does. Built on the host from the token ids the data loader already holds.
#pragma once

#include <cstddef>
#include <algorithm>
#include <vector>

namespace zp {

struct RowGroups {
  std::vector<int> order;  // token indices, grouped by row, ascending within a group
  std::vector<int> start;  // group g is order[start[g] .. start[g + 1]); groups() + 1 entries
  std::vector<int> row;    // the table row of each group, ascending
  int groups() const { return static_cast<int>(row.size()); }
};

// Tokens whose row_of(i) is negative (outside this rank's vocabulary shard) are left out.
template <class RowOf>
RowGroups group_rows(size_t N, RowOf row_of) {
  RowGroups g;
  g.order.reserve(N);
  for (size_t i = 0; i < N; ++i) {
    if (row_of(i) >= 0) g.order.push_back(static_cast<int>(i));
  }
  // A stable sort by row keeps token order within each group.
  std::stable_sort(g.order.begin(), g.order.end(), [&](int a, int b) { return row_of(a) < row_of(b); });
  for (size_t j = 0; j < g.order.size(); ++j) {
    const int r = static_cast<int>(row_of(g.order[j]));
    if (g.row.empty() || g.row.back() != r) {
      g.row.push_back(r);
      g.start.push_back(static_cast<int>(j));
    }
  }
  g.start.push_back(static_cast<int>(g.order.size()));
  return g;
}

}  // namespace zp
