// The host emulator's own checks (tests/simt/simt.h), which the emulated
// kernel tests rely on to stand for a GPU: launches a GPU refuses are
// refused, and the two schedules tell a racy kernel from a correct one.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <vector>

namespace {

void count_threads(int* ran) { ++*ran; }

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
