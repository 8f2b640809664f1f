// LoopbackCommunicator: one process plays rank `rank` of a group of `size`,
// in the spirit of Megatron-LM's fake process group. Every collective touches
// the same buffers and moves the same bytes as the real one through local
// copies; the values are this rank's own (an all-reduce leaves the data as
// is, an all-gather repeats the local shard). Point-to-point sends are
// dropped and receives deliver zeros. emulated() is true.
#pragma once

#include "executor/communicator.h"
#include "executor/device.h"

namespace zp {

class LoopbackCommunicator final : public Communicator {
 public:
  // Its copies go through `device`, where the buffers it is given live.
  LoopbackCommunicator(int rank, int size, Device& device = host_device());
  Device& device() const { return device_; }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool emulated() const override { return true; }
  std::string name() const override { return "loopback"; }
  void do_all_reduce_sum(void* data, size_t count, Elem e) override;
  void do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_broadcast(void* data, size_t count, int root, Elem e) override;
  void do_send(const void* data, size_t count, int peer, Elem e) override;
  void do_recv(void* data, size_t count, int peer, Elem e) override;
  void do_exchange(const Transfer* transfers, size_t n, Elem e) override;
  void barrier() override {}

 private:
  int rank_, size_;
  Device& device_;
};

}  // namespace zp
