// A host emulator of the part of CUDA that kernels/ uses, so the kernels'
// and the CUDA backend's own source (kernels/*.cu, executor/cuda_*.cc,
// compiled as C++ against the stand-in headers of this folder:
// cuda_runtime.h, cuda_bf16.h, mma.h, cublasLt.h) runs on a CPU in the tests
// (cuda_ops_emulated_test and cuda_model_emulated_test: the GPU tests'
// comparisons with the CPU kernels and backend) and in zeroplan_emulated.
//
// Each CUDA thread of a block is a fiber (Boost.Context) on the calling thread,
// with its own stack, threadIdx, blockIdx, blockDim and gridDim; a fiber
// runs until it reaches a barrier (__syncthreads for the block, __syncwarp
// for its warp) or returns, then the next one runs; a barrier opens when
// every thread of its group that has not returned has arrived (as on sm_70
// and later). So memory is sequentially consistent, runs are deterministic,
// and a lane that reads what another writes without a barrier between them
// reads it before it is written whenever the writer comes later in the
// order. A barrier no runnable fiber can open is reported (std::abort with a
// message), never a hang. __shfl_xor_sync passes values through the warp's
// slots between two warp barriers. __shared__ arrays are static (blocks run
// one after another, so one copy serves each block in turn); dynamic shared
// memory is one aligned buffer, NaN bytes (0xff) at the launch, as a GPU
// promises nothing of it. WMMA fragments (mma.h) hold the whole tile.
//
// The checks a GPU makes, or a GPU's races would show, are made here too:
// - A launch the hardware refuses is refused (it does not run, and the next
//   cudaGetLastError says why): no threads or more than 1,024 in a block, a
//   grid past 2^31 - 1 blocks in x or 65,535 in y or z, or more dynamic
//   shared memory than 48 KiB without cudaFuncSetAttribute's opt-in for at
//   least as much (227 KiB at most, sm_90's limit).
// - A wide access (kernels/cuda_common.cuh's packed) must be aligned to its
//   size (check_aligned), or the GPU faults.
// - ZP_SIMT_SCHEDULE=reverse runs a block's threads in the opposite order
//   (the last thread first, up to each barrier). A thread that reads another's
//   write with no barrier between them reads it too early in one of the two
//   orders, so a kernel whose results differ between the orders has a race
//   (ctest runs the kernel tests in both).
// - ZP_SIMT_SCHEDULE=warps runs one warp at a time, the last first, each
//   through its warp barriers until it waits at a block barrier or ends. In
//   the other two the warps keep in step between block barriers, so a warp
//   that overwrites shared memory another warp still reads, with only warp
//   barriers between them, goes unseen; here that read comes too late (ctest
//   runs the kernel tests in this order too).
// What it cannot show: the hardware's timing, fragment layouts and the
// effects of a real memory model.
#pragma once

#include <boost/context/fiber.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) alignas(n)
#define __restrict__

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx, blockIdx, gridDim, blockDim;

namespace simt {

namespace context = boost::context;

constexpr int kWarp = 32;
constexpr size_t kStackBytes = 64 * 1024;  // the kernels keep a few KiB on their stacks at most

struct Barrier {
  int members = 0;  // threads of the group that have not returned
  int arrived = 0;
  uint64_t generation = 0;
};

struct Fiber {
  context::fiber self;  // where the scheduler resumes this thread
  context::fiber sink;  // where this thread resumes the scheduler
  dim3 index;
  int warp = 0;
  bool done = false;
  Barrier* waiting = nullptr;
  uint64_t waiting_for = 0;
};

// One launch's block in progress.
struct Block {
  std::vector<Fiber> fibers;
  Barrier block_barrier;
  std::vector<Barrier> warp_barriers;
  std::vector<float> slots;  // a value per thread, for shuffles
  int current = 0;
  std::function<void()> body;
  unsigned char* dynamic_shared = nullptr;
};

inline thread_local Block* block = nullptr;

// A wide access (a 16-, 8- or 4-byte pack) the GPU faults on where its
// address is not a multiple of its size; x86 would not, so the emulator stops.
inline void check_aligned(const void* p, size_t alignment) {
  if (reinterpret_cast<uintptr_t>(p) % alignment != 0) {
    std::fprintf(stderr, "simt: a %zu-byte access at %p is misaligned\n", alignment, p);
    std::abort();
  }
}

inline void yield() {
  Fiber& f = block->fibers[static_cast<size_t>(block->current)];
  f.sink = std::move(f.sink).resume();
}

inline void arrive(Barrier& b) {
  const uint64_t generation = b.generation;
  if (++b.arrived == b.members) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  Fiber& f = block->fibers[static_cast<size_t>(block->current)];
  f.waiting = &b;
  f.waiting_for = generation + 1;
  yield();
}

// A returning thread leaves its barriers' groups (and may open them).
inline void leave(Barrier& b) {
  --b.members;
  if (b.arrived > 0 && b.arrived == b.members) {
    b.arrived = 0;
    ++b.generation;
  }
}

inline unsigned char* dynamic_shared() { return block->dynamic_shared; }

// Launch refusals, as CUDA's error codes (cuda_runtime.h's cudaError_t).
constexpr int kInvalidValue = 1, kInvalidConfiguration = 9;
constexpr size_t kDefaultSharedBytes = 48 * 1024, kOptinSharedBytes = 227 * 1024;
inline thread_local int last_launch_error = 0;  // cudaGetLastError's answer, then cleared

// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) per kernel.
inline std::map<const void*, size_t>& shared_optins() {
  static std::map<const void*, size_t> optins;
  return optins;
}
inline std::mutex& shared_optins_mutex() {
  static std::mutex m;
  return m;
}

// The refusal a GPU would give this launch, or 0.
inline int launch_refusal(const void* kernel, dim3 grid, dim3 threads, size_t shared_bytes) {
  const uint64_t n = uint64_t{threads.x} * threads.y * threads.z;
  if (n == 0 || n > 1024 || threads.z > 64) return kInvalidConfiguration;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535)
    return kInvalidConfiguration;
  if (shared_bytes > kDefaultSharedBytes) {
    std::lock_guard<std::mutex> lock(shared_optins_mutex());
    const auto it = shared_optins().find(kernel);
    if (it == shared_optins().end() || it->second < shared_bytes) return kInvalidValue;
  }
  return 0;
}

// The order a block's threads run in: ZP_SIMT_SCHEDULE's, which a test may change.
enum class Schedule { forward, reverse, warps };
inline Schedule& schedule() {
  static Schedule order = [] {
    const char* name = std::getenv("ZP_SIMT_SCHEDULE");
    if (name != nullptr && std::strcmp(name, "reverse") == 0) return Schedule::reverse;
    if (name != nullptr && std::strcmp(name, "warps") == 0) return Schedule::warps;
    return Schedule::forward;
  }();
  return order;
}

// Runs kernel(args...) on every thread of every block of `grid`, a block at a time.
template <class Kernel, class... Args>
void launch(Kernel kernel, dim3 grid, dim3 threads, size_t shared_bytes, Args... args) {
  static thread_local context::pooled_fixedsize_stack stacks(kStackBytes);  // reused from block to block
  if (const int refusal = launch_refusal(reinterpret_cast<const void*>(kernel), grid, threads, shared_bytes)) {
    last_launch_error = refusal;
    return;
  }
  const bool reverse = schedule() == Schedule::reverse, warp_serial = schedule() == Schedule::warps;
  const int n = static_cast<int>(threads.x * threads.y * threads.z);
  const int warps = (n + kWarp - 1) / kWarp;
  std::vector<unsigned char> shared(shared_bytes + 256, 0xff);  // undefined on a GPU: NaN bytes here
  const auto at = reinterpret_cast<std::uintptr_t>(shared.data());
  Block b;
  b.dynamic_shared = shared.data() + ((256 - at % 256) % 256);
  b.fibers.resize(static_cast<size_t>(n));
  b.slots.resize(static_cast<size_t>(n));
  b.body = [&] { kernel(args...); };
  block = &b;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.block_barrier = Barrier{n, 0, 0};
        b.warp_barriers.assign(static_cast<size_t>(warps), Barrier{});
        for (int t = 0; t < n; ++t) {
          Fiber& f = b.fibers[static_cast<size_t>(t)];
          f.index = dim3(static_cast<unsigned>(t) % threads.x, static_cast<unsigned>(t) / threads.x % threads.y,
                         static_cast<unsigned>(t) / (threads.x * threads.y));
          f.warp = t / kWarp;
          f.done = false;
          f.waiting = nullptr;
          ++b.warp_barriers[static_cast<size_t>(f.warp)].members;
          f.self = context::fiber(std::allocator_arg, stacks, [&f](context::fiber&& sink) {
            f.sink = std::move(sink);
            block->body();
            leave(block->block_barrier);
            leave(block->warp_barriers[static_cast<size_t>(f.warp)]);
            f.done = true;
            return std::move(f.sink);
          });
        }
        blockIdx = dim3(bx, by, bz);
        gridDim = grid;
        blockDim = threads;
        // Resumes thread t if it can run; whether it did.
        const auto step = [&](int t) {
          Fiber& f = b.fibers[static_cast<size_t>(t)];
          if (f.done || (f.waiting != nullptr && f.waiting->generation < f.waiting_for)) return false;
          f.waiting = nullptr;
          b.current = t;
          threadIdx = f.index;
          f.self = std::move(f.self).resume();
          return true;
        };
        for (int finished = 0; finished < n;) {
          bool progressed = false;
          if (warp_serial) {
            // The last warp first, each as far as it goes (through its warp
            // barriers, to a block barrier or its end) before the next.
            for (int w = warps - 1; w >= 0; --w) {
              for (bool moved = true; moved;) {
                moved = false;
                for (int t = w * kWarp; t < std::min(n, (w + 1) * kWarp); ++t) moved |= step(t);
                progressed |= moved;
              }
            }
          } else {
            for (int i = 0; i < n; ++i) progressed |= step(reverse ? n - 1 - i : i);
          }
          finished = 0;
          for (const Fiber& f : b.fibers) finished += f.done;
          if (!progressed && finished < n) {
            std::fprintf(stderr, "simt: block (%u,%u,%u): threads wait at a barrier no running thread reaches\n", bx, by,
                         bz);
            std::abort();
          }
        }
      }
  block = nullptr;
}

}  // namespace simt

inline void __syncthreads() { simt::arrive(simt::block->block_barrier); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  simt::arrive(simt::block->warp_barriers[static_cast<size_t>(simt::block->fibers[simt::block->current].warp)]);
}
inline float __shfl_xor_sync(unsigned, float value, int lane_mask) {
  const int self = simt::block->current, base = self / simt::kWarp * simt::kWarp;
  simt::block->slots[static_cast<size_t>(self)] = value;
  __syncwarp();
  const float other = simt::block->slots[static_cast<size_t>(base + ((self - base) ^ lane_mask))];
  __syncwarp();
  return other;
}
inline float __expf(float x) { return std::exp(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
