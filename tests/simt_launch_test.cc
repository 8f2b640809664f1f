// The host emulator's own checks (tests/simt/simt.h, cuda_runtime.h), which
// the emulated kernel tests rely on to stand for a GPU: launches a GPU
// refuses are refused, the two schedules tell a racy kernel from a correct
// one, and copies with pinned memory complete only at the waits.
#include <doctest/doctest.h>

#include <cuda_runtime.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <vector>

namespace {

void count_threads(int* ran) { ++*ran; }

void read_first(const int* device, int* out) { *out = *device; }

void fill_shared(int* out) {
  int* s = reinterpret_cast<int*>(simt::dynamic_shared());
  s[threadIdx.x] = static_cast<int>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

// Reads its neighbour's slot without a barrier after the writes.
void racy_neighbour(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  __syncthreads();
  s[threadIdx.x] = 0;
}

// The same with the barrier in its place.
void synced_neighbour(int* out) {
  __shared__ int s[64];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) + 1;
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  __syncthreads();
  s[threadIdx.x] = 0;
}

std::vector<int> run_in(simt::Schedule order, void (*kernel)(int*)) {
  const simt::Schedule before = simt::schedule();
  simt::schedule() = order;
  std::vector<int> out(64, -1);
  simt::launch(kernel, dim3(1), dim3(64), 0, out.data());
  simt::schedule() = before;
  return out;
}

}  // namespace

TEST_CASE("the emulator refuses the launches a GPU refuses, and says why once") {
  int ran = 0;
  simt::launch(count_threads, dim3(1), dim3(1025), 0, &ran);
  CHECK(ran == 0);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(cudaGetLastError() == cudaSuccess);  // read once, then cleared, as CUDA's non-sticky errors

  simt::launch(count_threads, dim3(1, 65536), dim3(1), 0, &ran);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  simt::launch(count_threads, dim3(0), dim3(32), 0, &ran);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  CHECK(ran == 0);

  simt::launch(count_threads, dim3(2, 3), dim3(32, 32), 0, &ran);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(ran == 6 * 1024);
}

TEST_CASE("dynamic shared memory past 48 KiB needs the kernel's opt-in, up to 227 KiB") {
  std::vector<int> out(256, -1);
  const size_t bytes = 64 * 1024;
  simt::launch(fill_shared, dim3(1), dim3(256), bytes, out.data());
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(out[0] == -1);

  CHECK(cudaFuncSetAttribute(fill_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes - 4)) ==
        cudaSuccess);
  simt::launch(fill_shared, dim3(1), dim3(256), bytes, out.data());
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // opted in for less than the launch asks

  CHECK(cudaFuncSetAttribute(fill_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)) ==
        cudaSuccess);
  simt::launch(fill_shared, dim3(1), dim3(256), bytes, out.data());
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(out[0] == 1);
  CHECK(out[255] == 0);

  CHECK(cudaFuncSetAttribute(fill_shared, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
        cudaErrorInvalidValue);
}

TEST_CASE("a kernel that reads another thread's write without a barrier differs between the two schedules") {
  const std::vector<int> forward = run_in(simt::Schedule::forward, racy_neighbour);
  const std::vector<int> reverse = run_in(simt::Schedule::reverse, racy_neighbour);
  CHECK(forward != reverse);
  CHECK(forward[0] == 0);   // thread 1 has not written yet
  CHECK(reverse[0] == 2);   // thread 1 ran first
  CHECK(forward[63] == 1);  // thread 0 wrote before thread 63 read

  const std::vector<int> synced = run_in(simt::Schedule::forward, synced_neighbour);
  CHECK(synced == run_in(simt::Schedule::reverse, synced_neighbour));
  CHECK(synced[0] == 2);
  CHECK(synced[63] == 1);
}

TEST_CASE("a copy with pinned memory completes at the waits a GPU promises, not before") {
  int* device = nullptr;
  int *pinned = nullptr, pageable = 0;
  REQUIRE(cudaMalloc(&device, sizeof(int)) == cudaSuccess);
  REQUIRE(cudaHostAlloc(reinterpret_cast<void**>(&pinned), sizeof(int), cudaHostAllocDefault) == cudaSuccess);
  cudaStream_t copies = nullptr;
  cudaEvent_t landed = nullptr;
  REQUIRE(cudaStreamCreateWithFlags(&copies, cudaStreamNonBlocking) == cudaSuccess);
  REQUIRE(cudaEventCreate(&landed) == cudaSuccess);
  const int seven = 7;
  REQUIRE(cudaMemcpy(device, &seven, sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess);

  // To the host: there only after a wait that covers the copy.
  *pinned = 0;
  REQUIRE(cudaMemcpyAsync(pinned, device, sizeof(int), cudaMemcpyDeviceToHost, copies) == cudaSuccess);
  CHECK(*pinned == 0);
  REQUIRE(cudaEventRecord(landed, copies) == cudaSuccess);
  REQUIRE(cudaEventSynchronize(landed) == cudaSuccess);
  CHECK(*pinned == 7);
  // Pageable memory: staged before the call returns.
  REQUIRE(cudaMemcpyAsync(&pageable, device, sizeof(int), cudaMemcpyDeviceToHost, copies) == cudaSuccess);
  CHECK(pageable == 7);

  // To the device on a copy stream: a kernel not ordered after the copy reads the old value.
  *pinned = 9;
  REQUIRE(cudaMemcpyAsync(device, pinned, sizeof(int), cudaMemcpyHostToDevice, copies) == cudaSuccess);
  int seen = 0;
  simt::launch(read_first, dim3(1), dim3(1), 0, static_cast<const int*>(device), &seen);
  CHECK(seen == 7);
  REQUIRE(cudaEventRecord(landed, copies) == cudaSuccess);
  REQUIRE(cudaStreamWaitEvent(nullptr, landed, 0) == cudaSuccess);
  simt::launch(read_first, dim3(1), dim3(1), 0, static_cast<const int*>(device), &seen);
  CHECK(seen == 9);
  REQUIRE(cudaStreamSynchronize(copies) == cudaSuccess);

  // A blocking stream (cudaStreamCreate) is ordered with the default stream: its copy is seen at once.
  cudaStream_t blocking = nullptr;
  REQUIRE(cudaStreamCreate(&blocking) == cudaSuccess);
  *pinned = 11;
  REQUIRE(cudaMemcpyAsync(device, pinned, sizeof(int), cudaMemcpyHostToDevice, blocking) == cudaSuccess);
  simt::launch(read_first, dim3(1), dim3(1), 0, static_cast<const int*>(device), &seen);
  CHECK(seen == 11);
  REQUIRE(cudaStreamSynchronize(nullptr) == cudaSuccess);  // the legacy default stream waits for it too
  cudaStreamDestroy(blocking);

  // The host changing a copy's pinned source before the wait stops the process with a message.
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const int quiet = open("/dev/null", O_WRONLY);
    dup2(quiet, 2);
    cudaMemcpyAsync(device, pinned, sizeof(int), cudaMemcpyHostToDevice, copies);
    *pinned = 10;
    cudaStreamSynchronize(copies);
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGABRT);

  cudaEventDestroy(landed);
  cudaStreamDestroy(copies);
  cudaFreeHost(pinned);
  cudaFree(device);
}
