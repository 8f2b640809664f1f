// Communicator: the collectives and point-to-point transfers the parallel
// engine needs, over fp32 or bf16 buffers, for one group of ranks.
// Implementations: MpiCommunicator (processes started by mpirun),
// LoopbackCommunicator (one process standing in for one rank of a larger
// group: the collectives move the same bytes through local copies, so memory
// and compute are those of a real rank, but the values are not; runs so made
// are labelled emulated), TimedCommunicator (counts and times another), and
// later NCCL (issue 7). Callers use the typed calls; an implementation
// overrides the do_ calls, which take the element type. bf16 sums are formed
// in fp32 and rounded once per reduction step, as NCCL's bf16 reductions do.
// Failures throw std::runtime_error naming the call.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "executor/scalar.h"

namespace zp {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual bool emulated() const = 0;
  virtual std::string name() const = 0;

  // In place, sum over ranks.
  template <class T>
  void all_reduce_sum(T* data, size_t count) { do_all_reduce_sum(data, count, elem_of<T>()); }
  // in: size() * count_per_rank; out: count_per_rank, this rank's slice of the sum.
  template <class T>
  void reduce_scatter_sum(const T* in, T* out, size_t count_per_rank) {
    do_reduce_scatter_sum(in, out, count_per_rank, elem_of<T>());
  }
  // in: count_per_rank; out: size() * count_per_rank, rank-major.
  template <class T>
  void all_gather(const T* in, T* out, size_t count_per_rank) { do_all_gather(in, out, count_per_rank, elem_of<T>()); }
  template <class T>
  void broadcast(T* data, size_t count, int root) { do_broadcast(data, count, root, elem_of<T>()); }
  template <class T>
  void send(const T* data, size_t count, int peer) { do_send(data, count, peer, elem_of<T>()); }
  template <class T>
  void recv(T* data, size_t count, int peer) { do_recv(data, count, peer, elem_of<T>()); }
  // Any number of sends and receives at once, each to or from its own peer,
  // returning once all are done (torch.distributed.batch_isend_irecv; one
  // NCCL group; MPI_Isend/MPI_Irecv and a wait for all): Megatron-LM's
  // interleaved schedule sends an activation forward and a gradient back
  // while it receives both (core/pipeline_parallel/p2p_communication.py),
  // and on a ring of stages that only completes when all four are in
  // flight together. Between two ranks the transfers of one direction match
  // in the order they are listed; `tag` keeps directions apart where the
  // transport has tags (MPI).
  struct Transfer {
    bool send;
    void* data;
    size_t count;
    int peer;
    int tag;
  };
  template <class T>
  static Transfer send_to(const T* data, size_t count, int peer, int tag = 0) {
    return {true, const_cast<T*>(data), count, peer, tag};
  }
  template <class T>
  static Transfer recv_from(T* data, size_t count, int peer, int tag = 0) {
    return {false, data, count, peer, tag};
  }
  template <class T>
  void exchange(const std::vector<Transfer>& transfers) {
    if (!transfers.empty()) do_exchange(transfers.data(), transfers.size(), elem_of<T>());
  }
  // One send and one receive at once (MPI_Sendrecv's contract): what a
  // pipeline's steady state needs, where two neighbours each send and then
  // receive; with blocking sends of large messages done one after the other
  // they would wait for each other. An exchange of two transfers, so every
  // transport implements it once.
  template <class T>
  void send_recv(const T* send_data, size_t send_count, int dest, T* recv_data, size_t recv_count, int source) {
    const Transfer pair[2] = {send_to(send_data, send_count, dest), recv_from(recv_data, recv_count, source)};
    do_exchange(pair, 2, elem_of<T>());
  }
  virtual void barrier() = 0;
  // The group of the ranks that pass the same `color`, ordered by `key`, of
  // the same kind (MPI_Comm_split; a collective call over this
  // communicator); null where there are no other processes to group (an
  // emulated rank makes its own groups).
  virtual std::unique_ptr<Communicator> split(int color, int key) const {
    (void)color, (void)key;
    return nullptr;
  }

  // The element-typed calls, for implementations (and wrappers) to override.
  virtual void do_all_reduce_sum(void* data, size_t count, Elem e) = 0;
  virtual void do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) = 0;
  virtual void do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) = 0;
  virtual void do_broadcast(void* data, size_t count, int root, Elem e) = 0;
  virtual void do_send(const void* data, size_t count, int peer, Elem e) = 0;
  virtual void do_recv(void* data, size_t count, int peer, Elem e) = 0;
  virtual void do_exchange(const Transfer* transfers, size_t n, Elem e) = 0;
};

}  // namespace zp
