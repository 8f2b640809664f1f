// MpiCommunicator: the Communicator over MPI (OpenMPI, processes started by
// mpirun), on MPI_COMM_WORLD or a communicator split from it. Errors return
// (MPI_ERRORS_RETURN) and are thrown as std::runtime_error with the call's
// name, so a failing rank exits non-zero instead of hanging in a handler.
// Does not call MPI_Init/MPI_Finalize: MpiSession does.
#pragma once

#include <mpi.h>

#include <memory>

#include "executor/communicator.h"

namespace zp {

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;
  // The group of the ranks that pass the same `color`, ordered by `key`
  // (MPI_Comm_split; a collective call over this communicator).
  std::unique_ptr<Communicator> split(int color, int key) const override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool emulated() const override { return false; }
  std::string name() const override { return "mpi"; }
  void barrier() override;
  void do_all_reduce_sum(void* data, size_t count, Elem e) override;
  void do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_broadcast(void* data, size_t count, int root, Elem e) override;
  void do_send(const void* data, size_t count, int peer, Elem e) override;
  void do_recv(void* data, size_t count, int peer, Elem e) override;
  void do_exchange(const Transfer* transfers, size_t n, Elem e) override;

 private:
  MPI_Comm comm_;
  bool owned_ = false;  // split from another: freed with this object
  int rank_ = 0, size_ = 1;
};

}  // namespace zp
