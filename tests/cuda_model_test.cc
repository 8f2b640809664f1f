// The CUDA backend behind the models and the trainer (executor/cuda_device.h,
// cuda_backend.h) against the CPU backend on the same seeds: a GPT-2 style
// and a Llama-style toy model's loss and every gradient after one forward
// and backward (fp32 within 1e-4 of the largest gradient, bf16 within 3e-2;
// with materialised and with flash-style attention),
// and data-parallel training steps over an emulated group of 2 on each ZeRO
// stage, with optimizer offload (and the delayed update) on ZeRO-2 and 3,
// whose gradients reach the host through the drain's asynchronous copies
// (the losses of 4 steps within 1e-3 in fp32, 2e-2 in bf16). Runs only where a CUDA device is present
// (ctest label `gpu`); elsewhere it says it skipped.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <string>
#include <type_traits>
#include <vector>

#include "executor/cuda_backend.h"
#include "executor/cuda_device.h"
#include "executor/data_parallel.h"
#include "executor/gpt_model.h"
#include "executor/llama_model.h"
#include "executor/loopback_communicator.h"
#include "tests/tiny_models.h"

using namespace zp;

namespace {

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

void batch(std::vector<int>& tokens, std::vector<int>& targets, int n, int vocab, int salt) {
  tokens.resize(static_cast<size_t>(n));
  targets.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    tokens[static_cast<size_t>(i)] = (i * 7 + salt) % vocab;
    targets[static_cast<size_t>(i)] = (i * 5 + 3 + salt) % vocab;
  }
}

template <class T>
double largest_gap(const Buffer<T>& a, const Buffer<T>& b, double* largest) {
  const std::vector<T> x = host_copy(a), y = host_copy(b);
  REQUIRE(x.size() == y.size());
  double gap = 0, big = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    gap = std::max(gap, std::abs(static_cast<double>(x[i]) - static_cast<double>(y[i])));
    big = std::max(big, std::abs(static_cast<double>(x[i])));
  }
  *largest = big;
  return gap;
}

template <class Model, class Config>
void same_gradients(const Config& c, double tolerance, const char* what, bool flash = false) {
  CudaDevice gpu;
  TrackingAllocator host_memory, gpu_memory(gpu);
  Model on_host(c, 7, &host_memory), on_gpu(c, 7, &gpu_memory);
  on_host.set_flash_attention(flash);
  on_gpu.set_flash_attention(flash);
  const int B = 2, Tn = 8;
  std::vector<int> tokens, targets;
  batch(tokens, targets, B * Tn, c.vocab, 1);
  const double a = on_host.forward_backward(tokens.data(), targets.data(), B, Tn);
  const double b = on_gpu.forward_backward(tokens.data(), targets.data(), B, Tn);
  INFO(what << ": loss on the host " << a << ", on the GPU " << b);
  CHECK(std::abs(a - b) <= tolerance * std::max(1.0, std::abs(a)));
  double largest = 0;
  const double gap = largest_gap(on_host.grads, on_gpu.grads, &largest);
  INFO(what << ": largest gradient " << largest << ", largest difference " << gap);
  CHECK(largest > 0);
  CHECK(gap <= tolerance * largest);
  const uint64_t workspace = CudaBackend<typename Model::Scalar>::kMatmulWorkspaceBytes;
  CHECK(gpu_memory.current_bytes(Component::BackendScratch) >= workspace);
  if (flash) {
    // The cost model's CUDA scratch rows (costmodel/memory_model.cc): the
    // cuBLASLt workspace, flash attention's fp32 row dots [B,NH,T] and the
    // token index arrays, T token rows and 2T + 1 row-group entries (the
    // bound is met: the batch's 16 tokens are distinct).
    const uint64_t tokens = static_cast<uint64_t>(B) * Tn;
    CHECK(gpu_memory.current_bytes(Component::BackendScratch) ==
          workspace + static_cast<uint64_t>(B) * c.heads * Tn * 4 + (tokens + 2 * tokens + 1) * 4);
  }
}

template <class T>
std::vector<float> train(Device& device, int zero_stage, bool offload, bool delayed = false) {
  // The host side of a GPU is pinned memory, as zeroplan run gives it.
  TrackingAllocator memory(device), host(device.host_side());
  const GptConfig c = gpt_config(test::tiny_gpt(32, 8, 2, 2, 16));
  GptModel<T> model(c, 11, &memory);
  LoopbackCommunicator dp(1, 2, device);
  TrainerMemory where{&memory, &host, offload};
  where.delayed_update = delayed;
  DataParallelTrainer<GptModel<T>> trainer(model, dp, zero_stage, AdamConfig{}, where);
  std::vector<float> losses;
  std::vector<int> tokens, targets;
  for (int step = 0; step < 4; ++step) {
    batch(tokens, targets, 2 * 2 * 8, c.vocab, step);
    losses.push_back(trainer.step(tokens.data(), targets.data(), 2, 8, 2));
  }
  trainer.finish_pending();
  device.synchronize();
  return losses;
}

// Within `tolerance` of the CPU backend's losses; and, offloaded in fp32,
// within kSameKernels of the GPU's own losses without offload. Both run the
// GPU's kernels: only where the reduced gradients are added and AdamW runs
// differ, so what remains is fp32 rounding (about 1e-7 on the emulator). In
// bf16 an fp32 master weight a rounding apart can round to another bf16
// weight, so only the CPU comparison applies (the drain is the same code).
// The CPU comparison's tolerance allows for other kernels and would not
// see the host reading a gradient chunk before its copy landed (3e-6 to
// 2e-5 in the loss, measured on the emulator with the wait taken out).
template <class T>
void same_training(double tolerance, const char* what) {
  constexpr double kSameKernels = 1e-6;
  CudaDevice gpu;
  for (int stage = 0; stage <= 3; ++stage) {
    std::vector<float> on_device;  // the GPU's losses without offload
    for (int offload = 0; offload <= 2; ++offload) {  // none, offloaded, offloaded with the delayed update
      if (offload > 0 && stage < 2) continue;  // ZeRO-2/3's offloaded gradients pass through the host drain
      const std::vector<float> cpu = train<T>(host_device(), stage, offload > 0, offload == 2),
                               cuda = train<T>(gpu, stage, offload > 0, offload == 2);
      if (offload == 0) on_device = cuda;
      for (size_t i = 0; i < cpu.size(); ++i) {
        INFO(std::string(what) << " ZeRO-" << stage
                               << std::string(offload == 1 ? " + optimizer offload" : offload == 2 ? " + offload, delayed update" : "")
                  << " step " << i << std::setprecision(9) << ": host " << cpu[i] << ", GPU " << cuda[i]
                  << ", GPU without offload " << on_device[i]);
        CHECK(std::abs(cpu[i] - cuda[i]) <= tolerance * std::max(1.0f, std::abs(cpu[i])));
        if (offload == 1 && std::is_same_v<T, float>) {
          CHECK(std::abs(cuda[i] - on_device[i]) <= kSameKernels * std::max(1.0f, std::abs(on_device[i])));
        }
      }
    }
  }
}

}  // namespace

TEST_CASE("the CUDA backend computes what the CPU backend computes") {
  if (!have_device()) {
    MESSAGE("no CUDA device here: the CUDA backend checks are skipped (they run where a GPU is, ctest -L gpu)");
    return;
  }
  const GptConfig gpt = gpt_config(test::tiny_gpt(32, 8, 2, 2, 16));
  const LlamaConfig llama = llama_config(test::tiny_llama(32));
  same_gradients<GptModel<float>>(gpt, 1e-4, "GPT fp32");
  same_gradients<GptModel<bf16>>(gpt, 3e-2, "GPT bf16");
  same_gradients<LlamaModel<float>>(llama, 1e-4, "Llama fp32");
  same_gradients<LlamaModel<bf16>>(llama, 3e-2, "Llama bf16");
  // Flash-style attention on both sides (kernels/flash_attention_cuda.h against executor/ops_flash_cpu.h).
  same_gradients<GptModel<float>>(gpt, 1e-4, "GPT fp32, flash attention", true);
  same_gradients<GptModel<bf16>>(gpt, 3e-2, "GPT bf16, flash attention", true);
  same_gradients<LlamaModel<float>>(llama, 1e-4, "Llama fp32, flash attention", true);
  same_gradients<LlamaModel<bf16>>(llama, 3e-2, "Llama bf16, flash attention", true);
  same_training<float>(1e-3, "fp32");
  same_training<bf16>(2e-2, "bf16");
}
