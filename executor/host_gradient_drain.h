// HostGradientDrain<T>: ZeRO-Offload's reduced gradients, chunk by chunk,
// from the model's device into the offloaded optimizer's partition on the
// host, without holding backward up: each chunk is copied into one of a few
// staging slots in host memory after the work queued so far
// (Device::copy_to_host_async: on a GPU, on the compute stream, so the next
// reduction into the same buffer waits for it; on the host, at once), and a
// worker thread waits for the copy and adds the slot into the partition with
// the host's backend while the device goes on with the next unit. DeepSpeed's
// stage-2 offload likewise copies each gradient into a pinned fp32 buffer
// without waiting for it (deepspeed/runtime/zero/stage_1_and_2.py,
// async_inplace_copy_grad_to_fp32_buffer_from_gpu). wait() returns once
// every chunk has been added: before anything reads or zeroes the partition.
// The slots are tagged offload_staging (the cost model's zeroplan row
// "reduced gradient chunks in flight").
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "costmodel/memory_options.h"
#include "executor/backend.h"
#include "executor/device.h"
#include "executor/tagged_buffer.h"

namespace zp {

template <class T>
class HostGradientDrain {
 public:
  static constexpr int kSlots = kZeroplanDrainSlots;  // one landing while the worker adds the other

  // `from`: the device the chunks come from; `host`: the backend that adds
  // them (host memory); the slots, of `slot_elems` each, from `host_memory`.
  HostGradientDrain(Device& from, Backend<T>& host, TrackingAllocator* host_memory, size_t slot_elems)
      : from_(from), host_(host) {
    for (int s = 0; s < kSlots; ++s) slots_.push_back(make_buffer<T>(host_memory, Component::OffloadStaging, slot_elems));
    busy_.assign(kSlots, false);
    worker_ = std::thread([this] { run(); });
  }
  ~HostGradientDrain() {
    {
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, [this] { return idle(); });
      stop_ = true;
    }
    work_.notify_one();
    worker_.join();
  }
  HostGradientDrain(const HostGradientDrain&) = delete;
  HostGradientDrain& operator=(const HostGradientDrain&) = delete;

  // Adds `count` elements at `src` (on `from`) into dst_fp32, or into dst_low
  // when dst_fp32 is null, once they have landed. `src` may be written again
  // by work queued after this call.
  void add(const T* src, size_t count, float* dst_fp32, T* dst_low) {
    if (count > slots_.front().size()) throw std::logic_error("HostGradientDrain: a chunk larger than its slots");
    int slot = -1;
    {
      std::unique_lock<std::mutex> lock(m_);
      done_.wait(lock, [this] { return error_ || free_slot() >= 0; });
      rethrow();
      slot = free_slot();
      busy_[static_cast<size_t>(slot)] = true;  // until the worker has added it
    }
    uint64_t ticket = 0;
    try {
      ticket = from_.copy_to_host_async(slots_[static_cast<size_t>(slot)].data(), src, count * sizeof(T));
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      busy_[static_cast<size_t>(slot)] = false;
      throw;
    }
    {
      std::lock_guard<std::mutex> lock(m_);
      jobs_.push_back({slot, ticket, count, dst_fp32, dst_low});
    }
    work_.notify_one();
  }

  // Every chunk added; a failure on the worker is rethrown here.
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    done_.wait(lock, [this] { return idle(); });
    rethrow();
  }

 private:
  struct Job {
    int slot;
    uint64_t ticket;
    size_t count;
    float* dst_fp32;
    T* dst_low;
  };

  int free_slot() const {
    for (int s = 0; s < kSlots; ++s) {
      if (!busy_[static_cast<size_t>(s)]) return s;
    }
    return -1;
  }
  // A busy slot is a chunk not yet added, so none busy is nothing pending
  // (these three with m_ held).
  bool idle() const { return std::none_of(busy_.begin(), busy_.end(), [](bool busy) { return busy; }); }
  void rethrow() {
    if (!error_) return;
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
  void run() {
    try {
      from_.use_from_this_thread();
    } catch (...) {
      std::lock_guard<std::mutex> lock(m_);
      error_ = std::current_exception();
    }
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(m_);
        work_.wait(lock, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stopping, nothing left
        job = jobs_.front();
        jobs_.pop_front();
      }
      try {
        from_.wait_copy(job.ticket);
        const T* staged = slots_[static_cast<size_t>(job.slot)].data();
        if (job.dst_fp32) {
          host_.add_into_fp32(job.dst_fp32, staged, job.count, true);
        } else {
          host_.add_into(job.dst_low, staged, job.count, true);
        }
      } catch (...) {
        std::lock_guard<std::mutex> lock(m_);
        if (!error_) error_ = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(m_);
        busy_[static_cast<size_t>(job.slot)] = false;
      }
      done_.notify_all();
    }
  }

  Device& from_;
  Backend<T>& host_;
  std::vector<Buffer<T>> slots_;
  std::vector<bool> busy_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::mutex m_;
  std::condition_variable work_, done_;
  std::thread worker_;  // last: started once everything above exists
};

}  // namespace zp
