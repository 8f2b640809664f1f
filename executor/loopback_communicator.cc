#include "executor/loopback_communicator.h"

#include <algorithm>
#include <stdexcept>

namespace zp {

LoopbackCommunicator::LoopbackCommunicator(int rank, int size, Device& device)
    : rank_(rank), size_(size), device_(device) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::runtime_error("loopback communicator: rank " + std::to_string(rank) + " of " + std::to_string(size));
  }
}

void LoopbackCommunicator::do_all_reduce_sum(void* data, size_t count, Elem e) {
  // A ring all-reduce reads and writes the whole buffer; the sum of identical
  // contributions is not what a real group would hold, so the data stay as they are.
  (void)data;
  (void)count;
  (void)e;
}

void LoopbackCommunicator::do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) {
  const size_t bytes = count_per_rank * elem_bytes(e);
  device_.copy(out, static_cast<const char*>(in) + static_cast<size_t>(rank_) * bytes, bytes);
}

void LoopbackCommunicator::do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) {
  // Every slot gets the input: one copy into the first, then the filled
  // slots doubled into the next ones, 1 + ceil(log2 size) copies in all.
  // The bytes are a real gather's (the output written once), and a group of
  // 64 costs 7 copies, not 64: on a GPU each copy is a launch, and a ZeRO-3
  // rank gathers every unit twice a micro-batch (costmodel/time_model.h,
  // EmulatedRank, prices these copies).
  const size_t bytes = count_per_rank * elem_bytes(e);
  char* slots = static_cast<char*>(out);
  if (bytes == 0) return;
  device_.copy(slots, in, bytes);
  for (size_t filled = 1, total = static_cast<size_t>(size_); filled < total;) {
    const size_t more = std::min(filled, total - filled);
    device_.copy(slots + filled * bytes, slots, more * bytes);
    filled += more;
  }
}

void LoopbackCommunicator::do_broadcast(void* data, size_t count, int root, Elem e) {
  (void)data;
  (void)count;
  (void)e;
  if (root < 0 || root >= size_) throw std::runtime_error("loopback broadcast: root " + std::to_string(root));
}

void LoopbackCommunicator::do_send(const void* data, size_t count, int peer, Elem e) {
  (void)data;
  (void)count;
  (void)e;
  if (peer < 0 || peer >= size_) throw std::runtime_error("loopback send: peer " + std::to_string(peer));
}

void LoopbackCommunicator::do_recv(void* data, size_t count, int peer, Elem e) {
  if (peer < 0 || peer >= size_) throw std::runtime_error("loopback recv: peer " + std::to_string(peer));
  device_.zero(data, count * elem_bytes(e));
}

void LoopbackCommunicator::do_exchange(const Transfer* transfers, size_t n, Elem e) {
  for (size_t i = 0; i < n; ++i) {
    const Transfer& t = transfers[i];
    if (t.send) {
      do_send(t.data, t.count, t.peer, e);
    } else {
      do_recv(t.data, t.count, t.peer, e);
    }
  }
}

}  // namespace zp
