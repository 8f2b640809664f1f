// What host offload and phase timing need from CUDA (issue 7): pinned host
// memory (page-locked, so copies to and from the device run at the link's
// rate and asynchronously), a copy stream of its own (ZeRO-Offload's
// transfers overlap the compute stream's work), and phase times from CUDA
// events (what the GPU did between two points of a stream, not what the
// host waited). Each failure throws std::runtime_error naming the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace zp::cuda {

// cudaHostAlloc'd memory; freed on destruction.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(uint64_t bytes);
  ~PinnedBuffer();
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void* data() const { return p_; }
  uint64_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  uint64_t bytes_ = 0;
};

// A non-blocking stream for host <-> device copies, with events to order
// another stream after them.
class CopyStream {
 public:
  CopyStream();
  ~CopyStream();
  CopyStream(const CopyStream&) = delete;
  CopyStream& operator=(const CopyStream&) = delete;
  void to_device(void* device, const void* host, uint64_t bytes);
  void to_host(void* host, const void* device, uint64_t bytes);
  // Work later queued on `stream` (a cudaStream_t; nullptr = the default
  // stream) waits for the copies queued so far.
  void order_before(void* stream);
  void synchronize();
  void* stream() const { return stream_; }

 private:
  void* stream_ = nullptr;  // cudaStream_t
  void* done_ = nullptr;    // cudaEvent_t
};

// Points on one stream's timeline as CUDA events, for a step's phases
// (executor/timeline.h): mark() records an event after the work queued on
// the stream so far, without waiting; seconds() waits for the later event and
// reads the GPU's time between two. The events are kept for the next step.
class EventTimeline {
 public:
  explicit EventTimeline(void* stream = nullptr);  // a cudaStream_t; nullptr = the legacy default stream
  ~EventTimeline();
  EventTimeline(const EventTimeline&) = delete;
  EventTimeline& operator=(const EventTimeline&) = delete;
  size_t mark();
  double seconds(size_t from, size_t to);
  void clear() { used_ = 0; }

 private:
  void* stream_;
  std::vector<void*> events_;  // cudaEvent_t, the first used_ recorded
  size_t used_ = 0;
};

}  // namespace zp::cuda
