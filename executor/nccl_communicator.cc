#include "executor/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <stdexcept>

#include "kernels/device_memory.h"

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
  check(MPI_Comm_dup(comm, &mpi_), "MPI_Comm_dup");
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
  // A blocking stream: its work waits for what the legacy default stream
  // (the backend's kernels) queued before, so a collective reads finished
  // gradients.
  cudaStream_t s = nullptr;
  check(cudaStreamCreate(&s), "cudaStreamCreate");
  stream_ = s;
  check(cudaMalloc(&scratch_, sizeof(float)), "cudaMalloc");
  check(cudaMemset(scratch_, 0, sizeof(float)), "cudaMemset");
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_) ncclCommDestroy(nc(comm_));
  if (stream_) cudaStreamDestroy(st(stream_));
  if (scratch_) cudaFree(scratch_);
  for (void* p : staging_) {
    if (p) cudaFree(p);
  }
  if (mpi_ != MPI_COMM_NULL) MPI_Comm_free(&mpi_);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) const {
  MPI_Comm part = MPI_COMM_NULL;
  check(MPI_Comm_split(mpi_, color, key, &part), "MPI_Comm_split");
  auto out = std::make_unique<NcclCommunicator>(part);  // keeps a duplicate
  MPI_Comm_free(&part);
  return out;
}

NcclCommunicator::Operand NcclCommunicator::stage(const void* p, size_t bytes, int slot, bool copy_in) {
  if (bytes == 0 || !cuda::host_pointer(p)) return {const_cast<void*>(p), nullptr, bytes};
  if (staging_bytes_[slot] < bytes) {
    if (staging_[slot]) check(cudaFree(staging_[slot]), "cudaFree (staging)");
    staging_[slot] = nullptr;
    check(cudaMalloc(&staging_[slot], bytes), "cudaMalloc (staging)");
    staging_bytes_[slot] = bytes;
  }
  if (copy_in) check(cudaMemcpyAsync(staging_[slot], p, bytes, cudaMemcpyHostToDevice, st(stream_)), "staging in");
  return {staging_[slot], const_cast<void*>(p), bytes};
}

void NcclCommunicator::unstage(const Operand& o) {
  if (!o.host) return;
  check(cudaMemcpyAsync(o.host, o.device, o.bytes, cudaMemcpyDeviceToHost, st(stream_)), "staging out");
  wait("staging out");
}

void NcclCommunicator::wait(const char* what) { check(cudaStreamSynchronize(st(stream_)), what); }

void NcclCommunicator::barrier() {
  check(ncclAllReduce(scratch_, scratch_, 1, ncclFloat32, ncclSum, nc(comm_), st(stream_)), "barrier");
  wait("barrier");
}

// Each call: host operands staged in (slot 0) and out (slot 1; in place: the same slot).
void NcclCommunicator::do_all_reduce_sum(void* data, size_t count, Elem e) {
  const Operand d = stage(data, count * elem_bytes(e), 0, true);
  check(ncclAllReduce(d.device, d.device, count, nccl_type(e), ncclSum, nc(comm_), st(stream_)), "all_reduce");
  wait("all_reduce");
  unstage(d);
}

void NcclCommunicator::do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) {
  const size_t bytes = count_per_rank * elem_bytes(e);
  const Operand i = stage(in, bytes * static_cast<size_t>(size_), 0, true), o = stage(out, bytes, 1, false);
  check(ncclReduceScatter(i.device, o.device, count_per_rank, nccl_type(e), ncclSum, nc(comm_), st(stream_)),
        "reduce_scatter");
  wait("reduce_scatter");
  unstage(o);
}

void NcclCommunicator::do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) {
  const size_t bytes = count_per_rank * elem_bytes(e);
  const Operand i = stage(in, bytes, 0, true), o = stage(out, bytes * static_cast<size_t>(size_), 1, false);
  check(ncclAllGather(i.device, o.device, count_per_rank, nccl_type(e), nc(comm_), st(stream_)), "all_gather");
  wait("all_gather");
  unstage(o);
}

void NcclCommunicator::do_broadcast(void* data, size_t count, int root, Elem e) {
  const Operand d = stage(data, count * elem_bytes(e), 0, true);
  check(ncclBroadcast(d.device, d.device, count, nccl_type(e), root, nc(comm_), st(stream_)), "broadcast");
  wait("broadcast");
  unstage(d);
}

void NcclCommunicator::do_send(const void* data, size_t count, int peer, Elem e) {
  const Operand d = stage(data, count * elem_bytes(e), 0, true);
  check(ncclSend(d.device, count, nccl_type(e), peer, nc(comm_), st(stream_)), "send");
  wait("send");
}

void NcclCommunicator::do_recv(void* data, size_t count, int peer, Elem e) {
  const Operand d = stage(data, count * elem_bytes(e), 1, false);
  check(ncclRecv(d.device, count, nccl_type(e), peer, nc(comm_), st(stream_)), "recv");
  wait("recv");
  unstage(d);
}

void NcclCommunicator::do_exchange(const Transfer* transfers, size_t n, Elem e) {
  if (n > kStagingSlots) throw std::runtime_error("nccl exchange: " + std::to_string(n) + " transfers, at most " + std::to_string(kStagingSlots));
  Operand operands[kStagingSlots];
  for (size_t i = 0; i < n; ++i) {
    const Transfer& t = transfers[i];
    operands[i] = stage(t.data, t.count * elem_bytes(e), static_cast<int>(i), t.send);
  }
  // NCCL matches a pair's sends and receives in the order they are issued.
  check(ncclGroupStart(), "exchange (group start)");
  for (size_t i = 0; i < n; ++i) {
    const Transfer& t = transfers[i];
    if (t.send) {
      check(ncclSend(operands[i].device, t.count, nccl_type(e), t.peer, nc(comm_), st(stream_)), "exchange (send)");
    } else {
      check(ncclRecv(operands[i].device, t.count, nccl_type(e), t.peer, nc(comm_), st(stream_)), "exchange (recv)");
    }
  }
  check(ncclGroupEnd(), "exchange (group end)");
  wait("exchange");
  for (size_t i = 0; i < n; ++i) {
    if (!transfers[i].send) unstage(operands[i]);
  }
}

}  // namespace zp
