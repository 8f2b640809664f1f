// NcclCommunicator: the Communicator interface over NCCL (issue 7), one
// process per GPU, bootstrapped over MPI the usual way (rank 0's
// ncclGetUniqueId broadcast with MPI_Bcast, then ncclCommInitRank). Each
// process takes the GPU of its rank within its node (MPI_COMM_TYPE_SHARED),
// modulo the node's device count. Buffers are device memory, or host memory
// (a loss, an offloaded parameter partition), which is staged through a
// device buffer of the communicator's own. The calls keep the interface's
// blocking meaning: each enqueues on the communicator's own stream, a
// blocking one, so it starts after the kernels queued before it on the
// legacy default stream, and waits for it; send_recv is one NCCL group, so
// neighbours exchanging at once cannot deadlock. split() makes the groups
// of a 3D layout, each an NCCL communicator of its own. bf16 reductions are NCCL's
// (fp32 accumulation inside each reduction step). Failures throw
// std::runtime_error naming the call and NCCL's message. Built only with
// CUDA and NCCL (target zp_executor_cuda); tested where GPUs are.
#pragma once

#include <mpi.h>

#include <cstddef>
#include <memory>
#include <string>

#include "executor/communicator.h"

namespace zp {

class NcclCommunicator final : public Communicator {
 public:
  // A collective call over `comm`.
  explicit NcclCommunicator(MPI_Comm comm);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool emulated() const override { return false; }
  std::string name() const override { return "nccl"; }
  int device() const { return device_; }
  void barrier() override;
  std::unique_ptr<Communicator> split(int color, int key) const override;
  void do_all_reduce_sum(void* data, size_t count, Elem e) override;
  void do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_broadcast(void* data, size_t count, int root, Elem e) override;
  void do_send(const void* data, size_t count, int peer, Elem e) override;
  void do_recv(void* data, size_t count, int peer, Elem e) override;
  void do_exchange(const Transfer* transfers, size_t n, Elem e) override;

 private:
  void wait(const char* what);
  // Device memory for `bytes` of a host operand (in: its bytes copied there;
  // out: copied back by unstage()); device operands pass as they are.
  struct Operand {
    void* device;
    void* host;  // null for a device operand
    size_t bytes;
  };
  Operand stage(const void* p, size_t bytes, int slot, bool copy_in);
  void unstage(const Operand& o);
  MPI_Comm mpi_ = MPI_COMM_NULL;  // this group's processes (a duplicate), for split()
  void* comm_ = nullptr;    // ncclComm_t
  void* stream_ = nullptr;  // cudaStream_t
  void* scratch_ = nullptr; // one float of device memory for barrier()
  // Host operands' device copies, grown as needed: one slot per operand of
  // a call (an exchange has up to kStagingSlots transfers).
  static constexpr int kStagingSlots = 4;
  void* staging_[kStagingSlots] = {};
  size_t staging_bytes_[kStagingSlots] = {};
  int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace zp
