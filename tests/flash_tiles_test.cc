// The tensor-core flash kernels' tiles (kernels/flash_tiles.h) without a GPU:
// what WMMA requires of every fragment pointer and leading dimension, that
// each kernel's shared memory fits an sm_80 block for every head size the
// path takes, that tiles do not overlap (but the staging tile, which lies
// over the key and value tiles and must end within them), and that the forward and dq kernels'
// key tiles visit exactly the keys a causal row sees (and the dk, dv
// kernel's query tiles, from the key tile's start, exactly the queries that
// see a key), and that the time model prices the head sizes the path takes
// at its rate and the others at the warp kernels'. The kernels themselves run in tests/cuda_ops_test.cc on a GPU.
#include <doctest/doctest.h>

#include <vector>

#include "costmodel/compute.h"
#include "kernels/flash_tiles.h"

using namespace zp::cuda;
namespace ft = zp::cuda::flash_tiles;

namespace {

struct Placed {
  ft::Tile tile;
  int rows;
  std::size_t element_bytes;
};

// WMMA: fragment pointers 32-byte aligned, ldm a multiple of 16 bytes; a
// fragment starts at a row that is a multiple of 16 and a column that is a
// multiple of 16, so aligned tile starts and 16-byte rows suffice.
void check_tiles(const std::vector<Placed>& tiles, std::size_t total) {
  std::size_t end = 0;
  for (const Placed& p : tiles) {
    CHECK(p.tile.offset % 32 == 0);
    CHECK(p.tile.offset >= end);  // after the previous one
    if (p.tile.ld > 1) CHECK(p.tile.ld * p.element_bytes % 16 == 0);
    for (int r0 = 0; r0 < p.rows; r0 += ft::kFragment) {
      CHECK((p.tile.offset + static_cast<std::size_t>(r0) * p.tile.ld * p.element_bytes) % 32 == 0);
    }
    end = p.tile.offset + static_cast<std::size_t>(p.rows) * p.tile.ld * p.element_bytes;
  }
  CHECK(end <= total);
  CHECK(total <= ft::kSm80SharedBytes);
}

// The fp32 staging tile of kRows rows of hs lies over the key and value
// tiles (read by then) and ends before the value tile does; its fragments
// are aligned as WMMA's stores require.
void check_stage(ft::Tile stage, ft::Tile k, ft::Tile v, int kv_rows, int hs) {
  CHECK(stage.offset == k.offset);
  CHECK(v.offset >= k.offset);
  CHECK(stage.ld >= hs);
  CHECK(stage.ld * 4 % 16 == 0);
  CHECK(stage.offset + static_cast<std::size_t>(ft::kRows) * stage.ld * 4 <=
        v.offset + static_cast<std::size_t>(kv_rows) * v.ld * 2);
  for (int r0 = 0; r0 < ft::kRows; r0 += ft::kFragment) {
    CHECK((stage.offset + static_cast<std::size_t>(r0) * stage.ld * 4) % 32 == 0);
  }
}

// A tile laid over another starts where it does and ends within it, its
// fragments aligned as WMMA's loads require.
void check_within(const Placed& over, const Placed& under) {
  CHECK(over.tile.offset == under.tile.offset);
  CHECK(over.tile.ld * over.element_bytes % 16 == 0);
  CHECK(static_cast<std::size_t>(over.rows) * over.tile.ld * over.element_bytes <=
        static_cast<std::size_t>(under.rows) * under.tile.ld * under.element_bytes);
  for (int r0 = 0; r0 < over.rows; r0 += ft::kFragment) {
    CHECK((over.tile.offset + static_cast<std::size_t>(r0) * over.tile.ld * over.element_bytes) % 32 == 0);
  }
}

}  // namespace

TEST_CASE("the tensor-core path takes bf16 heads of a multiple of 16 up to 128") {
  CHECK(ft::eligible(64));
  CHECK(ft::eligible(80));
  CHECK(ft::eligible(128));
  CHECK_FALSE(ft::eligible(8));
  CHECK_FALSE(ft::eligible(72));
  CHECK_FALSE(ft::eligible(144));
  CHECK_FALSE(ft::eligible(256));
}

TEST_CASE("every tile is aligned for WMMA and each kernel fits an sm_80 block") {
  for (int hs = ft::kFragment; hs <= ft::kMaxHeadDim; hs += ft::kFragment) {
    CAPTURE(hs);
    const ft::ForwardLayout f = ft::forward_layout(hs);
    check_tiles({{f.q, ft::kRows, 2}, {f.k, ft::kKeys, 2}, {f.v, ft::kKeys, 2}, {f.s, ft::kRows, 4}, {f.p, ft::kRows, 2},
                 {f.m, ft::kRows, 4}, {f.l, ft::kRows, 4}, {f.corr, ft::kRows, 4}, {f.rows, ft::kFragment, 4}},
                f.bytes);
    check_stage(f.stage, f.k, f.v, ft::kKeys, hs);
    const ft::QueryLayout g = ft::query_layout(hs);
    check_tiles({{g.k, ft::kKeys, 2}, {g.v, ft::kKeys, 2}, {g.s, ft::kRows, 4}, {g.dp, ft::kRows, 4},
                 {g.ds, ft::kRows, 2}, {g.lse, ft::kRows, 4}, {g.rowdot, ft::kRows, 4}},
                g.bytes);
    check_stage(g.stage, g.k, g.v, ft::kKeys, hs);
    check_within({g.q, ft::kRows, 2}, {g.s, ft::kRows, 4});
    check_within({g.dout, ft::kRows, 2}, {g.dp, ft::kRows, 4});
    const int nq = ft::kKeyValueQueries;
    const ft::KeyValueLayout h = ft::key_value_layout(hs);
    check_tiles({{h.k, ft::kRows, 2}, {h.v, ft::kRows, 2}, {h.q, nq, 2}, {h.dout, nq, 2}, {h.st, ft::kRows, 4},
                 {h.dpt, ft::kRows, 4}, {h.pt, ft::kRows, 2}, {h.dst, ft::kRows, 2}, {h.lse, nq, 4}, {h.rowdot, nq, 4}},
                h.bytes);
    check_stage(h.stage, h.k, h.v, ft::kRows, hs);
    // 16-byte row accesses: every bf16 row tile's rows start on 16 bytes.
    for (const ft::Tile t : {f.q, f.k, f.v, g.q, g.dout, g.k, g.v, h.k, h.v, h.q, h.dout}) {
      CHECK(t.offset % 16 == 0);
      CHECK(t.ld % ft::kPack == 0);
    }
    CHECK(hs % ft::kPack == 0);
    // Row tiles hold the head; score tiles a key (or query) tile.
    CHECK(f.q.ld >= hs);
    CHECK(f.s.ld >= ft::kKeys);
    CHECK(h.st.ld >= nq);
  }
  // At GPT-2's head size an SM of an H200 (227 KiB for blocks) holds four
  // forward, three dq and four dk, dv blocks by shared memory.
  CHECK(4 * ft::forward_layout(64).bytes <= 227 * 1024);
  CHECK(3 * ft::query_layout(64).bytes <= 227 * 1024);
  CHECK(4 * ft::key_value_layout(64).bytes <= 227 * 1024);
}

TEST_CASE("the key tiles of a query row, and the query tiles of a key row, are exactly its causal pairs") {
  for (const int Tn : {1, 17, 63, 64, 65, 128, 200}) {
    CAPTURE(Tn);
    for (int q0 = 0; q0 < Tn; q0 += ft::kRows) {
      for (int t = q0; t < q0 + ft::kRows; ++t) {
        int seen = 0;
        bool all_masked_tile = false;
        for (int k0 = 0; k0 < ft::key_end(q0, Tn); k0 += ft::kKeys) {
          int in_tile = 0;
          for (int t2 = k0; t2 < k0 + ft::kKeys; ++t2) in_tile += ft::visible(t, t2, Tn);
          seen += in_tile;
          all_masked_tile |= t < Tn && in_tile == 0;
        }
        CHECK(seen == (t < Tn ? t + 1 : 0));
        CHECK_FALSE(all_masked_tile);  // the forward's running maximum is finite after every tile
      }
    }
    for (int k0 = 0; k0 < Tn; k0 += ft::kRows) {
      for (int t2 = k0; t2 < k0 + ft::kRows; ++t2) {
        int seen = 0;
        for (int q0 = k0; q0 < Tn; q0 += ft::kKeyValueQueries) {
          for (int t = q0; t < q0 + ft::kKeyValueQueries; ++t) seen += ft::visible(t, t2, Tn);
        }
        CHECK(seen == (t2 < Tn ? Tn - t2 : 0));
      }
    }
  }
}

// The time model follows the kernel that runs (costmodel/compute.h): it must
// send exactly the bf16 heads this path takes to its rate.
TEST_CASE("the time model's tensor-core flash heads are the kernels' own") {
  for (int hs = 0; hs <= 2 * ft::kMaxHeadDim + 16; ++hs) {
    CAPTURE(hs);
    CHECK(zp::zeroplan_flash_on_tensor_cores(static_cast<uint64_t>(hs), zp::Precision::Bf16) == ft::eligible(hs));
    CHECK_FALSE(zp::zeroplan_flash_on_tensor_cores(static_cast<uint64_t>(hs), zp::Precision::Fp32));
    CHECK_FALSE(zp::zeroplan_flash_on_tensor_cores(static_cast<uint64_t>(hs), zp::Precision::Fp16));
  }
}
