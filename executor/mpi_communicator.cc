#include "executor/mpi_communicator.h"

#include <climits>
#include <stdexcept>
#include <string>

namespace zp {
namespace {

void check(int status, const char* call) {
  if (status == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(status, text, &length);
  throw std::runtime_error(std::string(call) + ": " + std::string(text, static_cast<size_t>(length)));
}

int count_of(size_t n, const char* call) {
  if (n > static_cast<size_t>(INT_MAX)) throw std::runtime_error(std::string(call) + ": more than INT_MAX elements");
  return static_cast<int>(n);
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) check(MPI_Init(argc, argv), "MPI_Init");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
  check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
}

MpiCommunicator::~MpiCommunicator() {
  if (owned_) MPI_Comm_free(&comm_);
}

std::unique_ptr<MpiCommunicator> MpiCommunicator::split(int color, int key) const {
  MPI_Comm part;
  check(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
  auto out = std::make_unique<MpiCommunicator>(part);
  out->owned_ = true;
  return out;
}

void MpiCommunicator::all_reduce_sum(float* data, size_t count) {
  check(MPI_Allreduce(MPI_IN_PLACE, data, count_of(count, "MPI_Allreduce"), MPI_FLOAT, MPI_SUM, comm_), "MPI_Allreduce");
}

void MpiCommunicator::reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) {
  check(MPI_Reduce_scatter_block(in, out, count_of(count_per_rank, "MPI_Reduce_scatter_block"), MPI_FLOAT, MPI_SUM, comm_),
        "MPI_Reduce_scatter_block");
}

void MpiCommunicator::all_gather(const float* in, float* out, size_t count_per_rank) {
  const int n = count_of(count_per_rank, "MPI_Allgather");
  check(MPI_Allgather(in, n, MPI_FLOAT, out, n, MPI_FLOAT, comm_), "MPI_Allgather");
}

void MpiCommunicator::broadcast(float* data, size_t count, int root) {
  check(MPI_Bcast(data, count_of(count, "MPI_Bcast"), MPI_FLOAT, root, comm_), "MPI_Bcast");
}

void MpiCommunicator::send(const float* data, size_t count, int peer) {
  check(MPI_Send(data, count_of(count, "MPI_Send"), MPI_FLOAT, peer, 0, comm_), "MPI_Send");
}

void MpiCommunicator::recv(float* data, size_t count, int peer) {
  check(MPI_Recv(data, count_of(count, "MPI_Recv"), MPI_FLOAT, peer, 0, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
}

void MpiCommunicator::send_recv(const float* send_data, size_t send_count, int dest, float* recv_data,
                                size_t recv_count, int source) {
  check(MPI_Sendrecv(send_data, count_of(send_count, "MPI_Sendrecv"), MPI_FLOAT, dest, 0, recv_data,
                     count_of(recv_count, "MPI_Sendrecv"), MPI_FLOAT, source, 0, comm_, MPI_STATUS_IGNORE),
        "MPI_Sendrecv");
}

void MpiCommunicator::barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

}  // namespace zp
