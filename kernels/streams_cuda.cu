#include "kernels/streams_cuda.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace zp::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }
cudaEvent_t as_event(void* e) { return static_cast<cudaEvent_t>(e); }

}  // namespace

PinnedBuffer::PinnedBuffer(uint64_t bytes) : bytes_(bytes) {
  check(cudaHostAlloc(&p_, bytes, cudaHostAllocDefault), "cudaHostAlloc");
}

PinnedBuffer::~PinnedBuffer() { cudaFreeHost(p_); }

CopyStream::CopyStream() {
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  stream_ = s;
  cudaEvent_t e = nullptr;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  done_ = e;
}

CopyStream::~CopyStream() {
  cudaEventDestroy(as_event(done_));
  cudaStreamDestroy(as_stream(stream_));
}

void CopyStream::to_device(void* device, const void* host, uint64_t bytes) {
  check(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, as_stream(stream_)), "cudaMemcpyAsync to device");
}

void CopyStream::to_host(void* host, const void* device, uint64_t bytes) {
  check(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, as_stream(stream_)), "cudaMemcpyAsync to host");
}

void CopyStream::order_before(void* stream) {
  check(cudaEventRecord(as_event(done_), as_stream(stream_)), "cudaEventRecord");
  check(cudaStreamWaitEvent(as_stream(stream), as_event(done_), 0), "cudaStreamWaitEvent");
}

void CopyStream::synchronize() { check(cudaStreamSynchronize(as_stream(stream_)), "cudaStreamSynchronize (copies)"); }

EventTimeline::EventTimeline(void* stream) : stream_(stream) {}

EventTimeline::~EventTimeline() {
  for (void* e : events_) cudaEventDestroy(as_event(e));
}

size_t EventTimeline::mark() {
  if (used_ == events_.size()) {
    cudaEvent_t e = nullptr;
    check(cudaEventCreate(&e), "cudaEventCreate");
    events_.push_back(e);
  }
  check(cudaEventRecord(as_event(events_[used_]), as_stream(stream_)), "cudaEventRecord");
  return used_++;
}

double EventTimeline::seconds(size_t from, size_t to) {
  if (from >= used_ || to >= used_) throw std::out_of_range("EventTimeline: no such mark");
  check(cudaEventSynchronize(as_event(events_[to])), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, as_event(events_[from]), as_event(events_[to])), "cudaEventElapsedTime");
  return ms * 1e-3;
}

}  // namespace zp::cuda
