// The kernels of kernels/token_ops_cuda.h, the formulas of the CPU backend's
// (executor/cpu_backend.h, ops_cpu.h) in fp32.
#include "kernels/token_ops_cuda.h"

#include "kernels/cuda_common.cuh"

namespace zp::cuda {
namespace {

template <class D>
__global__ void gather_add_rows_kernel(D* out, const D* table, const int* row_of, size_t N, int C) {
  const size_t n = N * static_cast<size_t>(C);
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const size_t i = e / C;
    const int c = static_cast<int>(e % C);
    const int r = row_of[i];
    if (r >= 0) out[e] = from_f<D>(to_f(out[e]) + to_f(table[static_cast<size_t>(r) * C + c]));
  }
}

template <class D>
__global__ void gather_rows_kernel(D* out, const D* table, const int* row_of, size_t N, int C) {
  const size_t n = N * static_cast<size_t>(C);
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int r = row_of[e / C];
    out[e] = r >= 0 ? table[static_cast<size_t>(r) * C + e % C] : from_f<D>(0.0f);
  }
}

// One thread per (group, column): the group's rows summed in token order.
template <class D>
__global__ void scatter_add_rows_kernel(D* table, const D* rows, const int* order, const int* start, const int* row,
                                        int groups, int C) {
  const size_t n = static_cast<size_t>(groups) * C;
  for (size_t e = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int g = static_cast<int>(e / C);
    const int c = static_cast<int>(e % C);
    float sum = 0;
    for (int j = start[g]; j < start[g + 1]; ++j) sum += to_f(rows[static_cast<size_t>(order[j]) * C + c]);
    D* to = table + static_cast<size_t>(row[g]) * C + c;
    *to = from_f<D>(to_f(*to) + sum);
  }
}

// One block per row. In place when dlogits == logits: every read of the row
// (its maximum, its sum, the target's logit) happens before the first write.
template <class D>
__global__ void cross_entropy_kernel(D* dlogits, float* losses, const D* logits, const int* targets, int N, int V) {
  __shared__ float target_logit;
  const size_t row = blockIdx.x;
  const D* l = logits + row * V;
  const int target = targets[row];
  if (threadIdx.x == 0) target_logit = to_f(l[target]);
  float local_max = -1e30f;
  for (int v = threadIdx.x; v < V; v += blockDim.x) local_max = fmaxf(local_max, to_f(l[v]));
  const float m = block_max(local_max);
  float local_sum = 0;
  for (int v = threadIdx.x; v < V; v += blockDim.x) local_sum += expf(to_f(l[v]) - m);
  const float logz = logf(block_sum(local_sum)) + m;  // block_sum synchronises: target_logit is set
  if (threadIdx.x == 0) losses[row] = logz - target_logit;
  D* d = dlogits + row * V;
  const float inv_n = 1.0f / N;
  for (int v = threadIdx.x; v < V; v += blockDim.x) {
    d[v] = from_f<D>((expf(to_f(l[v]) - logz) - (v == target ? 1.0f : 0.0f)) * inv_n);
  }
}

}  // namespace

template <class T>
void gather_add_rows(T* out, const T* table, const int* row_of, size_t N, int C) {
  launch_kernel(gather_add_rows_kernel<device_t<T>>, blocks_for(N * static_cast<size_t>(C)), kBlock, 0, dev(out), dev(table), row_of, N, C);
  check_launch("gather_add_rows");
}

template <class T>
void gather_rows(T* out, const T* table, const int* row_of, size_t N, int C) {
  launch_kernel(gather_rows_kernel<device_t<T>>, blocks_for(N * static_cast<size_t>(C)), kBlock, 0, dev(out), dev(table), row_of, N, C);
  check_launch("gather_rows");
}

template <class T>
void scatter_add_rows(T* table, const T* rows, const int* order, const int* start, const int* row, int groups, int C) {
  if (groups == 0) return;
  launch_kernel(scatter_add_rows_kernel<device_t<T>>, blocks_for(static_cast<size_t>(groups) * C), kBlock, 0, dev(table), dev(rows), order, start,
                                                                                   row, groups, C);
  check_launch("scatter_add_rows");
}

template <class T>
void cross_entropy_forward_backward(T* dlogits, float* losses, const T* logits, const int* targets, int N, int V) {
  launch_kernel(cross_entropy_kernel<device_t<T>>, static_cast<unsigned>(N), kBlock, 0, dev(dlogits), losses, dev(logits), targets, N, V);
  check_launch("cross_entropy_forward_backward");
}

#define ZP_CUDA_TOKEN_OPS(T)                                                                          \
  template void gather_add_rows<T>(T*, const T*, const int*, size_t, int);                            \
  template void gather_rows<T>(T*, const T*, const int*, size_t, int);                                \
  template void scatter_add_rows<T>(T*, const T*, const int*, const int*, const int*, int, int);       \
  template void cross_entropy_forward_backward<T>(T*, float*, const T*, const int*, int, int);
ZP_CUDA_TOKEN_OPS(float)
ZP_CUDA_TOKEN_OPS(Bf16)
#undef ZP_CUDA_TOKEN_OPS

}  // namespace zp::cuda
