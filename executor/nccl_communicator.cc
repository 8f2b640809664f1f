#include "executor/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <stdexcept>

namespace zp {
namespace {

void check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("nccl ") + what + ": " + ncclGetErrorString(r));
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("nccl ") + what + ": " + cudaGetErrorString(e));
}

void check(int mpi_status, const char* what) {
  if (mpi_status != MPI_SUCCESS) throw std::runtime_error(std::string("nccl bootstrap: ") + what + " failed");
}

ncclDataType_t nccl_type(Elem e) { return e == Elem::F32 ? ncclFloat32 : ncclBfloat16; }

ncclComm_t nc(void* p) { return static_cast<ncclComm_t>(p); }
cudaStream_t st(void* p) { return static_cast<cudaStream_t>(p); }

}  // namespace

NcclCommunicator::NcclCommunicator(MPI_Comm comm) {
  check(MPI_Comm_rank(comm, &rank_), "MPI_Comm_rank");
  check(MPI_Comm_size(comm, &size_), "MPI_Comm_size");
  // The GPU of this process: its rank among the processes of its node.
  MPI_Comm node = MPI_COMM_NULL;
  check(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
  int local_rank = 0;
  check(MPI_Comm_rank(node, &local_rank), "MPI_Comm_rank (node)");
  MPI_Comm_free(&node);
  int devices = 0;
  check(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices == 0) throw std::runtime_error("nccl: no CUDA device on this node");
  device_ = local_rank % devices;
  check(cudaSetDevice(device_), "cudaSetDevice");
  ncclUniqueId id;
  if (rank_ == 0) check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  check(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, comm), "MPI_Bcast of the unique id");
  ncclComm_t c = nullptr;
  check(ncclCommInitRank(&c, size_, id, rank_), "ncclCommInitRank");
  comm_ = c;
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  stream_ = s;
  check(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
  check(cudaMemset(scratch_, 0, sizeof(float)), "cudaMemset");
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(nc(comm_));
  if (stream_) cudaStreamDestroy(st(stream_));
  if (scratch_) cudaFree(scratch_);
}

void NcclCommunicator::wait(const char* what) { check(cudaStreamSynchronize(st(stream_)), what); }

void NcclCommunicator::barrier() {
  check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, nc(comm_), st(stream_)), "barrier");
  wait("barrier");
}

void NcclCommunicator::do_all_reduce_sum(void* data, size_t count, Elem e) {
  check(ncclAllReduce(data, data, count, nccl_type(e), ncclSum, nc(comm_), st(stream_)), "all_reduce");
  wait("all_reduce");
}

void NcclCommunicator::do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) {
  check(ncclReduceScatter(in, out, count_per_rank, nccl_type(e), ncclSum, nc(comm_), st(stream_)), "reduce_scatter");
  wait("reduce_scatter");
}

void NcclCommunicator::do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) {
  check(ncclAllGather(in, out, count_per_rank, nccl_type(e), nc(comm_), st(stream_)), "all_gather");
  wait("all_gather");
}

void NcclCommunicator::do_broadcast(void* data, size_t count, int root, Elem e) {
  check(ncclBroadcast(data, data, count, nccl_type(e), root, nc(comm_), st(stream_)), "broadcast");
  wait("broadcast");
}

void NcclCommunicator::do_send(const void* data, size_t count, int peer, Elem e) {
  check(ncclSend(data, count, nccl_type(e), peer, nc(comm_), st(stream_)), "send");
  wait("send");
}

void NcclCommunicator::do_recv(void* data, size_t count, int peer, Elem e) {
  check(ncclRecv(data, count, nccl_type(e), peer, nc(comm_), st(stream_)), "recv");
  wait("recv");
}

void NcclCommunicator::do_send_recv(const void* send_data, size_t send_count, int dest, void* recv_data,
                                    size_t recv_count, int source, Elem e) {
  check(ncclGroupStart(), "send_recv (group start)");
  check(ncclSend(send_data, send_count, nccl_type(e), dest, nc(comm_), st(stream_)), "send_recv (send)");
  check(ncclRecv(recv_data, recv_count, nccl_type(e), source, nc(comm_), st(stream_)), "send_recv (recv)");
  check(ncclGroupEnd(), "send_recv (group end)");
  wait("send_recv");
}

}  // namespace zp
