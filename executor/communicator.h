// Communicator: the collectives and point-to-point transfers the parallel
// engine needs, over fp32 buffers, for one group of ranks. Implementations:
// MpiCommunicator (processes started by mpirun), LoopbackCommunicator (one
// process standing in for one rank of a larger group: the collectives move the
// same bytes through local copies, so memory and compute are those of a real
// rank, but the values are not; runs so made are labelled emulated), and
// later NCCL (issue 7). Failures throw std::runtime_error naming the call.
#pragma once

#include <cstddef>
#include <string>

namespace zp {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual bool emulated() const = 0;
  virtual std::string name() const = 0;

  // In place, sum over ranks.
  virtual void all_reduce_sum(float* data, size_t count) = 0;
  // in: size() * count_per_rank; out: count_per_rank, this rank's slice of the sum.
  virtual void reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) = 0;
  // in: count_per_rank; out: size() * count_per_rank, rank-major.
  virtual void all_gather(const float* in, float* out, size_t count_per_rank) = 0;
  virtual void broadcast(float* data, size_t count, int root) = 0;
  virtual void send(const float* data, size_t count, int peer) = 0;
  virtual void recv(float* data, size_t count, int peer) = 0;
  // Both at once (MPI_Sendrecv): what a pipeline's steady state needs, where
  // two neighbours each send and then receive; with blocking sends of large
  // messages done one after the other they would wait for each other.
  virtual void send_recv(const float* send_data, size_t send_count, int dest, float* recv_data, size_t recv_count,
                         int source) = 0;
  virtual void barrier() = 0;
};

}  // namespace zp
