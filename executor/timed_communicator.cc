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

void TimedCommunicator::do_all_reduce_sum(void* data, size_t count, Elem e) {
  timed(Collective::AllReduce, count * elem_bytes(e), [&] { inner_.do_all_reduce_sum(data, count, e); });
}

void TimedCommunicator::do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) {
  timed(Collective::ReduceScatter, count_per_rank * static_cast<uint64_t>(size()) * elem_bytes(e),
        [&] { inner_.do_reduce_scatter_sum(in, out, count_per_rank, e); });
}

void TimedCommunicator::do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) {
  timed(Collective::AllGather, count_per_rank * elem_bytes(e), [&] { inner_.do_all_gather(in, out, count_per_rank, e); });
}

void TimedCommunicator::do_broadcast(void* data, size_t count, int root, Elem e) {
  timed(Collective::Broadcast, count * elem_bytes(e), [&] { inner_.do_broadcast(data, count, root, e); });
}

void TimedCommunicator::do_send(const void* data, size_t count, int peer, Elem e) {
  timed(Collective::Send, count * elem_bytes(e), [&] { inner_.do_send(data, count, peer, e); });
}

void TimedCommunicator::do_recv(void* data, size_t count, int peer, Elem e) {
  timed(Collective::Recv, count * elem_bytes(e), [&] { inner_.do_recv(data, count, peer, e); });
}

void TimedCommunicator::do_exchange(const Transfer* transfers, size_t n, Elem e) {
  uint64_t sent = 0;
  for (size_t i = 0; i < n; ++i) sent += transfers[i].send ? transfers[i].count * elem_bytes(e) : 0;
  timed(Collective::SendRecv, sent, [&] { inner_.do_exchange(transfers, n, e); });
}

void TimedCommunicator::barrier() {
  timed(Collective::Barrier, 0, [&] { inner_.barrier(); });
}

}  // namespace zp
