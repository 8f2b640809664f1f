// LoopbackCommunicator: one process plays rank `rank` of a group of `size`,
// in the spirit of Megatron-LM's fake process group. Every collective touches
// the same buffers and moves the same bytes as the real one through local
// copies; the values are this rank's own (an all-reduce leaves the data as
// is, an all-gather repeats the local shard). Point-to-point sends are
// dropped and receives deliver zeros. emulated() is true.
#pragma once

#include "executor/communicator.h"

namespace zp {

class LoopbackCommunicator final : public Communicator {
 public:
  LoopbackCommunicator(int rank, int size);
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool emulated() const override { return true; }
  std::string name() const override { return "loopback"; }
  void all_reduce_sum(float* data, size_t count) override;
  void reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) override;
  void all_gather(const float* in, float* out, size_t count_per_rank) override;
  void broadcast(float* data, size_t count, int root) override;
  void send(const float* data, size_t count, int peer) override;
  void recv(float* data, size_t count, int peer) override;
  void send_recv(const float* send_data, size_t send_count, int dest, float* recv_data, size_t recv_count,
                 int source) override;
  void barrier() override {}

 private:
  int rank_, size_;
};

}  // namespace zp
