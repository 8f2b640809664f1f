#include "executor/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

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

// MPI has no bf16: a two-byte type of its own and a sum that adds in fp32
// and rounds the result to bf16 (made once, on first use, after MPI_Init).
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const bf16* a = static_cast<const bf16*>(in);
  bf16* b = static_cast<bf16*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = bf16(static_cast<float>(a[i]) + static_cast<float>(b[i]));
}

MPI_Datatype mpi_type(Elem e) {
  if (e == Elem::F32) return MPI_FLOAT;
  static const MPI_Datatype bf16_type = [] {
    MPI_Datatype t;
    check(MPI_Type_contiguous(2, MPI_BYTE, &t), "MPI_Type_contiguous");
    check(MPI_Type_commit(&t), "MPI_Type_commit");
    return t;
  }();
  return bf16_type;
}

MPI_Op sum_op(Elem e) {
  if (e == Elem::F32) return MPI_SUM;
  static const MPI_Op bf16_op = [] {
    MPI_Op op;
    check(MPI_Op_create(&bf16_sum, 1, &op), "MPI_Op_create");
    return op;
  }();
  return bf16_op;
}

// The ranks on one node share its cores: each one's host loops (executor/
// adamw.h) get cores / local ranks threads, at least one, as DeepSpeed's
// launcher gives each rank its share (OMP_NUM_THREADS, when set, decides).
// More threads than cores would have every rank's OpenMP team spin against
// the others and against MPI's own polling.
void share_host_cores() {
#ifdef _OPENMP
  if (std::getenv("OMP_NUM_THREADS")) return;
  MPI_Comm node = MPI_COMM_NULL;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int local = 1;
  check(MPI_Comm_size(node, &local), "MPI_Comm_size (node)");
  MPI_Comm_free(&node);
  omp_set_num_threads(std::max(1, omp_get_num_procs() / local));
#endif
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) check(MPI_Init(argc, argv), "MPI_Init");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  share_host_cores();
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

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) const {
  MPI_Comm part;
  check(MPI_Comm_split(comm_, color, key, &part), "MPI_Comm_split");
  auto out = std::make_unique<MpiCommunicator>(part);
  out->owned_ = true;
  return out;
}

void MpiCommunicator::do_all_reduce_sum(void* data, size_t count, Elem e) {
  check(MPI_Allreduce(MPI_IN_PLACE, data, count_of(count, "MPI_Allreduce"), mpi_type(e), sum_op(e), comm_),
        "MPI_Allreduce");
}

void MpiCommunicator::do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) {
  check(MPI_Reduce_scatter_block(in, out, count_of(count_per_rank, "MPI_Reduce_scatter_block"), mpi_type(e), sum_op(e),
                                 comm_),
        "MPI_Reduce_scatter_block");
}

void MpiCommunicator::do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) {
  const int n = count_of(count_per_rank, "MPI_Allgather");
  check(MPI_Allgather(in, n, mpi_type(e), out, n, mpi_type(e), comm_), "MPI_Allgather");
}

void MpiCommunicator::do_broadcast(void* data, size_t count, int root, Elem e) {
  check(MPI_Bcast(data, count_of(count, "MPI_Bcast"), mpi_type(e), root, comm_), "MPI_Bcast");
}

void MpiCommunicator::do_send(const void* data, size_t count, int peer, Elem e) {
  check(MPI_Send(data, count_of(count, "MPI_Send"), mpi_type(e), peer, 0, comm_), "MPI_Send");
}

void MpiCommunicator::do_recv(void* data, size_t count, int peer, Elem e) {
  check(MPI_Recv(data, count_of(count, "MPI_Recv"), mpi_type(e), peer, 0, comm_, MPI_STATUS_IGNORE), "MPI_Recv");
}

void MpiCommunicator::do_exchange(const Transfer* transfers, size_t n, Elem e) {
  std::vector<MPI_Request> requests(n, MPI_REQUEST_NULL);
  for (size_t i = 0; i < n; ++i) {
    const Transfer& t = transfers[i];
    if (t.send) {
      check(MPI_Isend(t.data, count_of(t.count, "MPI_Isend"), mpi_type(e), t.peer, t.tag, comm_, &requests[i]), "MPI_Isend");
    } else {
      check(MPI_Irecv(t.data, count_of(t.count, "MPI_Irecv"), mpi_type(e), t.peer, t.tag, comm_, &requests[i]), "MPI_Irecv");
    }
  }
  check(MPI_Waitall(static_cast<int>(n), requests.data(), MPI_STATUSES_IGNORE), "MPI_Waitall (exchange)");
}

void MpiCommunicator::barrier() { check(MPI_Barrier(comm_), "MPI_Barrier"); }

}  // namespace zp
