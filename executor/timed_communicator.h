// TimedCommunicator: wraps another Communicator and records, per kind of
// call (all-reduce, reduce-scatter, all-gather, broadcast, send, recv,
// barrier), how many calls were made, the bytes this rank put in and the wall
// time they took, so a run can set each collective beside the time model's
// communication table. The wrapped communicator does the work.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

#include "executor/communicator.h"

namespace zp {

enum class Collective : uint8_t { AllReduce, ReduceScatter, AllGather, Broadcast, Send, Recv, SendRecv, Barrier, kCount };
constexpr int kNumCollectives = static_cast<int>(Collective::kCount);
const char* to_string(Collective c);

struct CollectiveStats {
  uint64_t calls = 0;
  uint64_t bytes = 0;  // this rank's input buffer bytes (send side for point to point)
  double seconds = 0;
};

class TimedCommunicator : public Communicator {
 public:
  explicit TimedCommunicator(Communicator& inner) : inner_(inner) {}
  int rank() const override { return inner_.rank(); }
  int size() const override { return inner_.size(); }
  bool emulated() const override { return inner_.emulated(); }
  std::string name() const override { return inner_.name(); }

  void do_all_reduce_sum(void* data, size_t count, Elem e) override;
  void do_reduce_scatter_sum(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_all_gather(const void* in, void* out, size_t count_per_rank, Elem e) override;
  void do_broadcast(void* data, size_t count, int root, Elem e) override;
  void do_send(const void* data, size_t count, int peer, Elem e) override;
  void do_recv(void* data, size_t count, int peer, Elem e) override;
  void do_exchange(const Transfer* transfers, size_t n, Elem e) override;
  void barrier() override;

  const CollectiveStats& stats(Collective c) const { return stats_[static_cast<int>(c)]; }
  void reset() { stats_ = {}; }

 private:
  template <class F>
  void timed(Collective c, uint64_t bytes, F&& call);
  Communicator& inner_;
  std::array<CollectiveStats, kNumCollectives> stats_{};
};

}  // namespace zp
