// The tiles of the tensor-core flash-attention kernels
// (flash_attention_tc_cuda.cu): how many rows a block and a warp own, how
// many keys or queries one step loads, and where each tile sits in the
// block's shared memory. Host-compilable, so tests/flash_tiles_test.cc
// checks without a GPU what WMMA requires of every fragment pointer (32-byte
// alignment, leading dimensions a multiple of 16 bytes: CUDA C++
// Programming Guide, "Warp Matrix Functions") and that each kernel's shared
// memory fits an sm_80 block (163 KiB opt-in; sm_90 allows 227 KiB).
//
// The tiling is FlashAttention-2's (Dao 2023, Algorithms 1 and 2): a block
// owns kRows query rows (forward, dq) or key rows (dk, dv), each of its
// kWarps warps 16 of them, the m = n = k = 16 of a bf16 WMMA fragment; keys
// (forward, dq) arrive kKeys at a time, queries (dk, dv) kKeyValueQueries at
// a time. Rows of bf16 tiles are padded by 8 elements and fp32 tiles by 4
// (16 bytes) so the rows of a fragment fall in different shared-memory banks.
// The accumulators (output, dq, dk, dv) and the warp's own rows of the
// block's side (queries, output gradients) live in registers, as in
// FlashAttention-2, so shared memory holds only what warps exchange.
#pragma once

#include <cstddef>

namespace zp::cuda::flash_tiles {

constexpr int kFragment = 16;
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kWarps * kFragment;
constexpr int kKeys = 64;
constexpr int kKeyValueQueries = 32;
constexpr int kMaxHeadDim = 128;
constexpr int kPack = 8;  // bf16 elements in one 16-byte load or store of a row
constexpr std::size_t kSm80SharedBytes = 163 * 1024;
constexpr std::size_t kAlign = 128;

// The tensor-core path takes bf16 heads of a multiple of 16 up to 128
// elements (GPT-2's 64, Llama's 64 and 128); others run the warp-per-row kernels.
constexpr bool eligible(int hs) { return hs > 0 && hs % kFragment == 0 && hs <= kMaxHeadDim; }

constexpr int bf16_ld(int columns) { return columns + 8; }
constexpr int f32_ld(int columns) { return columns + 4; }

constexpr std::size_t round_up(std::size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// A tile of `rows` x ld elements of `element_bytes` at `offset`.
struct Tile {
  std::size_t offset;
  int ld;
};

// Lays tiles out one after another, each starting on a kAlign boundary.
struct Arena {
  std::size_t bytes = 0;
  constexpr Tile take(int rows, int ld, std::size_t element_bytes) {
    const Tile t{bytes, ld};
    bytes += round_up(static_cast<std::size_t>(rows) * ld * element_bytes);
    return t;
  }
};

// Where a warp stages its fp32 accumulator rows (kRows x hs) on the way out
// to the tensor: over the key and value tiles (k, then v, contiguous), read
// by then. flash_tiles_test checks that it ends before v does (and every
// other tile laid over another, within it).
constexpr Tile stage_over(Tile k, int hs) { return Tile{k.offset, f32_ld(hs)}; }

// Forward: the block's queries, one key and value tile, the scores and their
// bf16 probabilities, per row the running maximum and sum and the last
// tile's correction of the output, and a fragment of row numbers (16 x 16,
// fp32; see flash_attention_tc_cuda.cu). The output accumulates in each
// warp's registers.
struct ForwardLayout {
  Tile q, k, v, s, p, m, l, corr, rows, stage;
  std::size_t bytes;
};
constexpr ForwardLayout forward_layout(int hs) {
  Arena a;
  ForwardLayout f{};
  f.q = a.take(kRows, bf16_ld(hs), 2);
  f.k = a.take(kKeys, bf16_ld(hs), 2);
  f.v = a.take(kKeys, bf16_ld(hs), 2);
  f.s = a.take(kRows, f32_ld(kKeys), 4);
  f.p = a.take(kRows, bf16_ld(kKeys), 2);
  f.m = a.take(kRows, 1, 4);
  f.l = a.take(kRows, 1, 4);
  f.corr = a.take(kRows, 1, 4);
  f.rows = a.take(kFragment, kFragment, 4);
  f.stage = stage_over(f.k, hs);
  f.bytes = a.bytes;
  return f;
}

// dq: one key and value tile, scores and dP (= dout v^T) in fp32, dS in
// bf16, and per row lse and D (= dout . out). dq accumulates in registers.
// The block's queries and output gradients are read once, into each warp's
// fragments, before the first scores: they lie over the score and dP tiles
// (bf16 rows of up to 128 fill fp32 rows of 64 keys), which leaves room for
// three blocks an SM at hs 64 (two otherwise).
struct QueryLayout {
  Tile q, dout, k, v, s, dp, ds, lse, rowdot, stage;
  std::size_t bytes;
};
constexpr QueryLayout query_layout(int hs) {
  Arena a;
  QueryLayout f{};
  f.k = a.take(kKeys, bf16_ld(hs), 2);
  f.v = a.take(kKeys, bf16_ld(hs), 2);
  f.s = a.take(kRows, f32_ld(kKeys), 4);
  f.dp = a.take(kRows, f32_ld(kKeys), 4);
  f.q = Tile{f.s.offset, bf16_ld(hs)};
  f.dout = Tile{f.dp.offset, bf16_ld(hs)};
  f.ds = a.take(kRows, bf16_ld(kKeys), 2);
  f.lse = a.take(kRows, 1, 4);
  f.rowdot = a.take(kRows, 1, 4);
  f.stage = stage_over(f.k, hs);
  f.bytes = a.bytes;
  return f;
}

// dk, dv: the block's keys and values, one tile of queries and their output
// gradients, the transposed scores and dP in fp32, P^T and dS^T in bf16,
// and per query lse and D. dk and dv accumulate in registers and leave one
// after the other through the staging tile.
struct KeyValueLayout {
  Tile k, v, q, dout, st, dpt, pt, dst, lse, rowdot, stage;
  std::size_t bytes;
};
constexpr KeyValueLayout key_value_layout(int hs) {
  Arena a;
  KeyValueLayout f{};
  f.k = a.take(kRows, bf16_ld(hs), 2);
  f.v = a.take(kRows, bf16_ld(hs), 2);
  f.q = a.take(kKeyValueQueries, bf16_ld(hs), 2);
  f.dout = a.take(kKeyValueQueries, bf16_ld(hs), 2);
  f.st = a.take(kRows, f32_ld(kKeyValueQueries), 4);
  f.dpt = a.take(kRows, f32_ld(kKeyValueQueries), 4);
  f.pt = a.take(kRows, bf16_ld(kKeyValueQueries), 2);
  f.dst = a.take(kRows, bf16_ld(kKeyValueQueries), 2);
  f.lse = a.take(kKeyValueQueries, 1, 4);
  f.rowdot = a.take(kKeyValueQueries, 1, 4);
  f.stage = stage_over(f.k, hs);
  f.bytes = a.bytes;
  return f;
}

// Causal: query t sees key t2 when t2 <= t; rows past T are padding.
constexpr bool visible(int t, int t2, int Tn) { return t2 <= t && t < Tn; }

// A query tile starting at q0 (a multiple of kRows) reads the key tiles
// starting below q0 + kRows (and T); since kKeys == kRows and both start on
// multiples of it, every key tile holds a visible key for every row.
constexpr int key_end(int q0, int Tn) { return q0 + kRows < Tn ? q0 + kRows : Tn; }
static_assert(kKeys == kRows, "key_end's argument: no key tile is masked whole for a row");
static_assert(kRows % kKeyValueQueries == 0, "dk, dv: the first query tile starts at the key tile's start");

}  // namespace zp::cuda::flash_tiles
