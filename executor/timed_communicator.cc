#include "executor/timed_communicator.h"

namespace zp {

const char* to_string(Collective c) {
  switch (c) {
    case Collective::AllReduce: return "all-reduce";
    case Collective::ReduceScatter: return "reduce-scatter";
    case Collective::AllGather: return "all-gather";
    case Collective::Broadcast: return "broadcast";
    case Collective::Send: return "send";
    case Collective::Recv: return "recv";
    case Collective::SendRecv: return "send-recv";
    case Collective::Barrier: return "barrier";
    case Collective::kCount: break;
  }
  return "?";
}

template <class F>
void TimedCommunicator::timed(Collective c, uint64_t bytes, F&& call) {
  const auto start = std::chrono::steady_clock::now();
  call();
  CollectiveStats& s = stats_[static_cast<int>(c)];
  s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  s.bytes += bytes;
  ++s.calls;
}

void TimedCommunicator::all_reduce_sum(float* data, size_t count) {
  timed(Collective::AllReduce, count * sizeof(float), [&] { inner_.all_reduce_sum(data, count); });
}
void TimedCommunicator::reduce_scatter_sum(const float* in, float* out, size_t count_per_rank) {
  timed(Collective::ReduceScatter, count_per_rank * static_cast<uint64_t>(size()) * sizeof(float),
        [&] { inner_.reduce_scatter_sum(in, out, count_per_rank); });
}
void TimedCommunicator::all_gather(const float* in, float* out, size_t count_per_rank) {
  timed(Collective::AllGather, count_per_rank * sizeof(float), [&] { inner_.all_gather(in, out, count_per_rank); });
}
void TimedCommunicator::broadcast(float* data, size_t count, int root) {
  timed(Collective::Broadcast, count * sizeof(float), [&] { inner_.broadcast(data, count, root); });
}
void TimedCommunicator::send(const float* data, size_t count, int peer) {
  timed(Collective::Send, count * sizeof(float), [&] { inner_.send(data, count, peer); });
}
void TimedCommunicator::recv(float* data, size_t count, int peer) {
  timed(Collective::Recv, count * sizeof(float), [&] { inner_.recv(data, count, peer); });
}
void TimedCommunicator::send_recv(const float* send_data, size_t send_count, int dest, float* recv_data,
                                  size_t recv_count, int source) {
  timed(Collective::SendRecv, send_count * sizeof(float),
        [&] { inner_.send_recv(send_data, send_count, dest, recv_data, recv_count, source); });
}

void TimedCommunicator::barrier() {
  timed(Collective::Barrier, 0, [&] { inner_.barrier(); });
}

}  // namespace zp
