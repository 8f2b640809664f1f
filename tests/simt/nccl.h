// Stands in for NCCL where the executor's CUDA side is built for the host
// emulator (simt.h): the processes of one node (mpirun's ranks) share a
// file-backed mapping per communicator, and each call runs at once, on the
// host, whatever its stream (the emulator's streams are synchronous too).
// It is NCCL's contract, checked, not NCCL's algorithms:
// - ncclCommInitRank is collective over the id rank 0 made (the name of the
//   mapping, published by an atomic rename once it is initialised);
// - every buffer must lie in device memory (cudaMalloc's), so a host operand
//   the caller forgot to stage is an ncclInvalidArgument, as it would be a
//   fault on a GPU;
// - the ranks of a collective must agree on the call, element count, type
//   and root, or every rank gets ncclInvalidUsage (NCCL would hang or mix
//   up data);
// - sends and receives pair in order per peer and must agree on size; a
//   group (ncclGroupStart/End) progresses all of its transfers together, so
//   a ring of exchanges cannot deadlock, and a lone send blocks until its
//   receiver comes, as NCCL's does.
// Sums accumulate in fp32 in rank order and round once to the element type
// (NCCL's ring rounds bf16 at each step; the executor's tests use values
// exact either way). A peer that has not arrived after kWaitLimit fails the
// call with ncclSystemError rather than hanging the test.
#pragma once

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

enum ncclResult_t {
  ncclSuccess = 0,
  ncclUnhandledCudaError = 1,
  ncclSystemError = 2,
  ncclInternalError = 3,
  ncclInvalidArgument = 4,
  ncclInvalidUsage = 5
};
enum ncclDataType_t { ncclFloat32 = 7, ncclBfloat16 = 9 };  // NCCL 2.10+'s values
enum ncclRedOp_t { ncclSum = 0 };
constexpr int NCCL_UNIQUE_ID_BYTES = 128;
struct ncclUniqueId {
  char internal[NCCL_UNIQUE_ID_BYTES];
};

namespace simt::nccl {

constexpr size_t kSlotBytes = size_t{1} << 20;     // each rank's part of a collective, per round
constexpr size_t kChannelBytes = size_t{1} << 18;  // one chunk in flight per (sender, receiver)
constexpr auto kWaitLimit = std::chrono::seconds(120);
static_assert(std::atomic<uint32_t>::is_always_lock_free && std::atomic<uint64_t>::is_always_lock_free,
              "atomics shared between processes must be lock-free");

// What a rank is about to do in a collective; the ranks compare theirs.
struct Call {
  uint32_t kind, type;
  uint64_t count;
  int32_t root, pad;
};
struct alignas(64) Header {
  std::atomic<uint32_t> arrived, generation, joined;
};
struct alignas(64) Channel {
  std::atomic<uint32_t> full;  // 1 while a chunk waits for its receiver
  uint32_t last;               // the chunk ends its message
  uint64_t bytes;
  char data[kChannelBytes];
};

// The mapping: the header, each rank's call, then (at Channel's alignment)
// the n x n channels and each rank's slot.
inline size_t channels_offset(int n) {
  const size_t calls_end = sizeof(Header) + sizeof(Call) * n;
  return (calls_end + alignof(Channel) - 1) / alignof(Channel) * alignof(Channel);
}
inline size_t mapping_bytes(int n) { return channels_offset(n) + sizeof(Channel) * n * n + kSlotBytes * n; }

}  // namespace simt::nccl

struct ncclComm {
  int rank = 0, nranks = 1;
  char* base = nullptr;
  size_t bytes = 0;
  simt::nccl::Header& header() { return *reinterpret_cast<simt::nccl::Header*>(base); }
  simt::nccl::Call* calls() { return reinterpret_cast<simt::nccl::Call*>(base + sizeof(simt::nccl::Header)); }
  simt::nccl::Channel& channel(int from, int to) {
    return reinterpret_cast<simt::nccl::Channel*>(base + simt::nccl::channels_offset(nranks))[from * nranks + to];
  }
  char* slot(int r) {
    return reinterpret_cast<char*>(&channel(0, 0)) + sizeof(simt::nccl::Channel) * nranks * nranks +
           simt::nccl::kSlotBytes * r;
  }
};
using ncclComm_t = ncclComm*;

namespace simt::nccl {

inline size_t element_bytes(ncclDataType_t t) { return t == ncclFloat32 ? 4 : 2; }
inline float load(const char* p, ncclDataType_t t) {
  if (t == ncclFloat32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  __nv_bfloat16 b;
  std::memcpy(&b, p, 2);
  return __bfloat162float(b);
}
inline void store(char* p, float v, ncclDataType_t t) {
  if (t == ncclFloat32) {
    std::memcpy(p, &v, 4);
  } else {
    const __nv_bfloat16 b = __float2bfloat16(v);
    std::memcpy(p, &b, 2);
  }
}

// Spins briefly, then sleeps: the ranks may outnumber the cores.
class Waiter {
 public:
  bool again() {
    if (++spins_ < 64) {
      sched_yield();
      return true;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    return std::chrono::steady_clock::now() - start_ < kWaitLimit;
  }

 private:
  int spins_ = 0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Sense-reversing barrier over the mapping's counters.
inline ncclResult_t barrier(ncclComm& c) {
  Header& h = c.header();
  const uint32_t generation = h.generation.load(std::memory_order_acquire);
  if (h.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(c.nranks)) {
    h.arrived.store(0, std::memory_order_relaxed);
    h.generation.fetch_add(1, std::memory_order_release);
    return ncclSuccess;
  }
  Waiter w;
  while (h.generation.load(std::memory_order_acquire) == generation) {
    if (!w.again()) return ncclSystemError;
  }
  return ncclSuccess;
}

inline bool on_device(const void* p, size_t bytes) {
  if (bytes == 0) return true;
  DeviceMemory& m = DeviceMemory::get();
  return m.holds(p) && m.holds(static_cast<const char*>(p) + bytes - 1);
}

inline thread_local int group_depth = 0;
struct Transfer {
  ncclComm* comm;
  bool send;
  char* data;
  size_t bytes, done;
  int peer;
  bool finished;
};
inline thread_local std::vector<Transfer> pending;

// Every rank publishes its call; all must match rank 0's.
inline ncclResult_t agree(ncclComm& c, Call mine) {
  if (group_depth > 0) return ncclInvalidUsage;  // the stand-in groups sends and receives only
  c.calls()[c.rank] = mine;
  if (barrier(c) != ncclSuccess) return ncclSystemError;
  const Call first = c.calls()[0];
  bool same = true;
  for (int r = 0; r < c.nranks; ++r) {
    const Call o = c.calls()[r];
    same = same && o.kind == first.kind && o.type == first.type && o.count == first.count && o.root == first.root;
  }
  if (barrier(c) != ncclSuccess) return ncclSystemError;  // nobody rewrites its call before all have read
  return same ? ncclSuccess : ncclInvalidUsage;
}

// A collective's rounds over `count` elements, `per_round` at a time: every
// rank publishes its part into its slot, all combine the slots once all
// have published, and no slot is rewritten before all have read it.
template <class Publish, class Combine>
ncclResult_t in_rounds(ncclComm& c, size_t count, size_t per_round, Publish publish, Combine combine) {
  for (size_t off = 0; off < count; off += per_round) {
    const size_t n = std::min(count - off, per_round);
    publish(off, n);
    if (barrier(c) != ncclSuccess) return ncclSystemError;
    combine(off, n);
    if (barrier(c) != ncclSuccess) return ncclSystemError;
  }
  return ncclSuccess;
}

// out[i] = the sum over ranks of element first + i of their slots, i < n.
inline void sum_slots(ncclComm& c, size_t first, size_t n, ncclDataType_t type, char* out) {
  const size_t es = element_bytes(type);
  for (size_t i = 0; i < n; ++i) {
    float sum = 0;
    for (int q = 0; q < c.nranks; ++q) sum += load(c.slot(q) + (first + i) * es, type);
    store(out + i * es, sum, type);
  }
}

// Moves what it can of each transfer, one chunk at a time per channel, in
// the order the transfers were posted.
inline ncclResult_t progress(std::vector<Transfer>& transfers) {
  Waiter w;
  for (;;) {
    bool all_done = true, moved = false;
    std::vector<std::pair<const Channel*, bool>> busy;  // (channel, sending): a self-send's two ends differ
    for (Transfer& t : transfers) {
      if (t.finished) continue;
      all_done = false;
      Channel& ch = t.send ? t.comm->channel(t.comm->rank, t.peer) : t.comm->channel(t.peer, t.comm->rank);
      bool taken = false;
      for (const auto& b : busy) taken = taken || (b.first == &ch && b.second == t.send);
      if (taken) continue;  // an earlier transfer on this channel goes first
      busy.emplace_back(&ch, t.send);
      if (t.send && ch.full.load(std::memory_order_acquire) == 0) {
        const size_t n = std::min(kChannelBytes, t.bytes - t.done);
        if (n > 0) std::memcpy(ch.data, t.data + t.done, n);
        ch.bytes = n;
        t.done += n;
        ch.last = t.done == t.bytes;
        ch.full.store(1, std::memory_order_release);
        t.finished = t.done == t.bytes;
        moved = true;
      } else if (!t.send && ch.full.load(std::memory_order_acquire) == 1) {
        const size_t n = ch.bytes;
        if (t.done + n > t.bytes || (ch.last != 0) != (t.done + n == t.bytes)) return ncclInvalidUsage;  // sizes differ
        if (n > 0) std::memcpy(t.data + t.done, ch.data, n);
        t.done += n;
        ch.full.store(0, std::memory_order_release);
        t.finished = t.done == t.bytes;
        moved = true;
      }
    }
    if (all_done) return ncclSuccess;
    if (!moved && !w.again()) return ncclSystemError;
  }
}

inline ncclResult_t post(ncclComm* c, bool send, const void* data, size_t count, ncclDataType_t type, int peer) {
  if (c == nullptr || peer < 0 || peer >= c->nranks) return ncclInvalidArgument;
  const size_t bytes = count * element_bytes(type);
  if (!on_device(data, bytes)) return ncclInvalidArgument;
  // An empty message still pairs with its receive, as one empty chunk.
  pending.push_back(Transfer{c, send, static_cast<char*>(const_cast<void*>(data)), bytes, 0, peer, false});
  if (group_depth > 0) return ncclSuccess;
  std::vector<Transfer> now;
  now.swap(pending);
  return progress(now);
}

}  // namespace simt::nccl

inline const char* ncclGetErrorString(ncclResult_t r) {
  switch (r) {
    case ncclSuccess: return "no error";
    case ncclSystemError: return "a peer did not arrive in time (simt stand-in)";
    case ncclInvalidArgument: return "invalid argument (a rank, or a buffer outside device memory)";
    case ncclInvalidUsage: return "invalid usage (ranks disagree on the call, or on a message's size)";
    default: return "internal error";
  }
}

inline ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  static std::atomic<unsigned> made{0};
  std::memset(id->internal, 0, sizeof id->internal);
  const char* dir = std::getenv("TMPDIR");
  std::snprintf(id->internal, sizeof id->internal, "%s/zp-simt-nccl-%d-%u-%llx", dir && *dir ? dir : "/tmp",
                static_cast<int>(getpid()), made.fetch_add(1),
                static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count()));
  return ncclSuccess;
}

inline ncclResult_t ncclCommInitRank(ncclComm_t* out, int nranks, ncclUniqueId id, int rank) {
  using namespace simt::nccl;
  if (nranks < 1 || rank < 0 || rank >= nranks || id.internal[0] == 0) return ncclInvalidArgument;
  const std::string path(id.internal, strnlen(id.internal, sizeof id.internal));
  const size_t bytes = mapping_bytes(nranks);
  int fd = -1;
  if (rank == 0) {
    // Made whole under a temporary name, then renamed: the others open only a ready mapping.
    const std::string tmp = path + ".tmp";
    fd = open(tmp.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return ncclSystemError;
    void* m = ftruncate(fd, static_cast<off_t>(bytes)) == 0
                  ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    if (m != MAP_FAILED) {
      new (m) Header{};
      munmap(m, bytes);
    }
    if (m == MAP_FAILED || rename(tmp.c_str(), path.c_str()) != 0) {
      close(fd);
      unlink(tmp.c_str());
      return ncclSystemError;
    }
  } else {
    Waiter w;
    while ((fd = open(path.c_str(), O_RDWR)) < 0) {
      if (!w.again()) return ncclSystemError;
    }
  }
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return ncclSystemError;
  auto* c = new ncclComm{rank, nranks, static_cast<char*>(m), bytes};
  // The last rank to map it removes the name; the mapping lives on.
  if (c->header().joined.fetch_add(1) + 1 == static_cast<uint32_t>(nranks)) unlink(path.c_str());
  if (barrier(*c) != ncclSuccess) {
    munmap(m, bytes);
    delete c;
    return ncclSystemError;
  }
  *out = c;
  return ncclSuccess;
}

inline ncclResult_t ncclCommDestroy(ncclComm_t c) {
  if (c == nullptr) return ncclSuccess;
  munmap(c->base, c->bytes);
  delete c;
  return ncclSuccess;
}

inline ncclResult_t ncclGroupStart() {
  ++simt::nccl::group_depth;
  return ncclSuccess;
}
inline ncclResult_t ncclGroupEnd() {
  using namespace simt::nccl;
  if (group_depth == 0) return ncclInvalidUsage;
  if (--group_depth > 0) return ncclSuccess;
  std::vector<Transfer> now;
  now.swap(pending);
  return progress(now);
}

inline ncclResult_t ncclSend(const void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t c,
                             cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  return simt::nccl::post(c, true, data, count, type, peer);
}
inline ncclResult_t ncclRecv(void* data, size_t count, ncclDataType_t type, int peer, ncclComm_t c, cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  return simt::nccl::post(c, false, data, count, type, peer);
}

inline ncclResult_t ncclAllReduce(const void* in, void* out, size_t count, ncclDataType_t type, ncclRedOp_t op,
                                  ncclComm_t c, cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  using namespace simt::nccl;
  const size_t es = element_bytes(type);
  if (op != ncclSum || !on_device(in, count * es) || !on_device(out, count * es)) return ncclInvalidArgument;
  if (ncclResult_t r = agree(*c, Call{1, type, count, 0, 0}); r != ncclSuccess) return r;
  return in_rounds(
      *c, count, kSlotBytes / es,
      [&](size_t off, size_t n) { std::memcpy(c->slot(c->rank), static_cast<const char*>(in) + off * es, n * es); },
      [&](size_t off, size_t n) { sum_slots(*c, 0, n, type, static_cast<char*>(out) + off * es); });
}

inline ncclResult_t ncclReduceScatter(const void* in, void* out, size_t count_per_rank, ncclDataType_t type,
                                      ncclRedOp_t op, ncclComm_t c, cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  using namespace simt::nccl;
  const size_t es = element_bytes(type), p = static_cast<size_t>(c->nranks);
  if (op != ncclSum || !on_device(in, count_per_rank * p * es) || !on_device(out, count_per_rank * es)) {
    return ncclInvalidArgument;
  }
  if (ncclResult_t r = agree(*c, Call{2, type, count_per_rank, 0, 0}); r != ncclSuccess) return r;
  return in_rounds(
      *c, count_per_rank, kSlotBytes / (es * p),
      [&](size_t off, size_t n) {
        // This rank's slot holds its n elements for every destination rank, in rank order.
        for (size_t q = 0; q < p; ++q) {
          std::memcpy(c->slot(c->rank) + q * n * es, static_cast<const char*>(in) + (q * count_per_rank + off) * es,
                      n * es);
        }
      },
      [&](size_t off, size_t n) { sum_slots(*c, c->rank * n, n, type, static_cast<char*>(out) + off * es); });
}

inline ncclResult_t ncclAllGather(const void* in, void* out, size_t count_per_rank, ncclDataType_t type, ncclComm_t c,
                                  cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  using namespace simt::nccl;
  const size_t es = element_bytes(type), p = static_cast<size_t>(c->nranks);
  if (!on_device(in, count_per_rank * es) || !on_device(out, count_per_rank * p * es)) return ncclInvalidArgument;
  if (ncclResult_t r = agree(*c, Call{3, type, count_per_rank, 0, 0}); r != ncclSuccess) return r;
  return in_rounds(
      *c, count_per_rank, kSlotBytes / es,
      [&](size_t off, size_t n) { std::memcpy(c->slot(c->rank), static_cast<const char*>(in) + off * es, n * es); },
      [&](size_t off, size_t n) {
        for (size_t q = 0; q < p; ++q) {
          std::memcpy(static_cast<char*>(out) + (q * count_per_rank + off) * es, c->slot(static_cast<int>(q)), n * es);
        }
      });
}

inline ncclResult_t ncclBroadcast(const void* in, void* out, size_t count, ncclDataType_t type, int root,
                                  ncclComm_t c, cudaStream_t stream) {
  simt::AsyncCopies::get().complete_stream(stream, false);  // what the stream queued before lands first
  using namespace simt::nccl;
  const size_t es = element_bytes(type);
  if (root < 0 || root >= c->nranks || !on_device(out, count * es)) return ncclInvalidArgument;
  if (c->rank == root && !on_device(in, count * es)) return ncclInvalidArgument;
  if (ncclResult_t r = agree(*c, Call{4, type, count, root, 0}); r != ncclSuccess) return r;
  return in_rounds(
      *c, count, kSlotBytes / es,
      [&](size_t off, size_t n) {
        if (c->rank == root) std::memcpy(c->slot(root), static_cast<const char*>(in) + off * es, n * es);
      },
      [&](size_t off, size_t n) { std::memcpy(static_cast<char*>(out) + off * es, c->slot(root), n * es); });
}
