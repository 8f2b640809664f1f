#include "executor/loopback_communicator.h"

#include <cstring>
#include <stdexcept>

namespace zp {

LoopbackCommunicator::LoopbackCommunicator(int rank, int size) : rank_(rank), size_(size) {
  if (size < 1 || rank < 0 || rank >= size) {
    throw std::runtime_error("loopback communicator: rank " + std::to_string(rank) + " of " + std::to_string(size));
  }
}

void LoopbackCommunicator::all_reduce_sum(float* data, size_t count) {
  // A ring all-reduce reads and writes the whole buffer; the sum of identical
  // contributions is not what a real group would hold, so the data stay as they are.
  (void)data;
  (void)count;
}

void LoopbackCommunicator::reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) {
  std::memcpy(out, in + static_cast<size_t>(rank_) * count_per_rank, count_per_rank * sizeof(float));
}

void LoopbackCommunicator::all_gather(const float* in, float* out, size_t count_per_rank) {
  for (int r = 0; r < size_; ++r) {
    std::memmove(out + static_cast<size_t>(r) * count_per_rank, in, count_per_rank * sizeof(float));
  }
}

void LoopbackCommunicator::broadcast(float* data, size_t count, int root) {
  (void)data;
  (void)count;
  if (root < 0 || root >= size_) throw std::runtime_error("loopback broadcast: root " + std::to_string(root));
}

void LoopbackCommunicator::send(const float* data, size_t count, int peer) {
  (void)data;
  (void)count;
  if (peer < 0 || peer >= size_) throw std::runtime_error("loopback send: peer " + std::to_string(peer));
}

void LoopbackCommunicator::recv(float* data, size_t count, int peer) {
  if (peer < 0 || peer >= size_) throw std::runtime_error("loopback recv: peer " + std::to_string(peer));
  std::memset(data, 0, count * sizeof(float));
}

void LoopbackCommunicator::send_recv(const float* send_data, size_t send_count, int dest, float* recv_data,
                                     size_t recv_count, int source) {
  send(send_data, send_count, dest);
  recv(recv_data, recv_count, source);
}

}  // namespace zp
