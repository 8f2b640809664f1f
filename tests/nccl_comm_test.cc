// NcclCommunicator on device buffers, under mpirun with one process per GPU
// (ctest runs it with one; bench/gpu_check.sh as many as the machine has):
// every collective against closed forms of the rank numbers, fp32 and bf16,
// a ring exchange through send_recv, buffers of megabytes, host operands and split groups. Where there is
// no CUDA device it says it skipped (label gpu). Built on the host emulator (ZP_SIMT_HOST), it runs in every
// ctest over tests/simt/nccl.h's stand-in, which is also checked for what it refuses.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "executor/poison.h"
#include "executor/mpi_communicator.h"
#include "executor/nccl_communicator.h"
#include "executor/scalar.h"

using namespace zp;

namespace {

std::unique_ptr<NcclCommunicator> g_nccl;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device copy of host values of T.
template <class T>
struct Device {
  T* p = nullptr;
  size_t n;
  explicit Device(const std::vector<T>& host) : n(host.size()) {
    check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    check(cudaMemcpy(p, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "to device");
  }
  ~Device() { cudaFree(p); }
  std::vector<T> read() const {
    std::vector<T> h(n);
    check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "to host");
    return h;
  }
};

template <class T>
std::vector<float> as_float(const std::vector<T>& v) {
  return std::vector<float>(v.begin(), v.end());
}

template <class T>
void check_collectives() {
  NcclCommunicator& c = *g_nccl;
  const int r = c.rank(), p = c.size();
  const size_t n = 1000;  // small integers: exact in bf16 and fp32
  std::vector<T> mine(n);
  for (size_t i = 0; i < n; ++i) mine[i] = T(static_cast<float>((r + 1) * (i % 7)));
  {
    Device<T> d(mine);
    c.all_reduce_sum(d.p, n);
    const std::vector<float> got = as_float(d.read());
    for (size_t i = 0; i < n; ++i) REQUIRE(got[i] == static_cast<float>(p * (p + 1) / 2 * (i % 7)));
  }
  {
    std::vector<T> in(n * p);
    for (size_t i = 0; i < in.size(); ++i) in[i] = T(static_cast<float>(r + i % 5));
    Device<T> din(in), dout{std::vector<T>(n)};
    c.reduce_scatter_sum(din.p, dout.p, n);
    const std::vector<float> got = as_float(dout.read());
    for (size_t i = 0; i < n; ++i) {
      REQUIRE(got[i] == static_cast<float>(p * (p - 1) / 2 + p * ((r * n + i) % 5)));
    }
    Device<T> all{std::vector<T>(n * p)};
    c.all_gather(dout.p, all.p, n);
    const std::vector<float> gathered = as_float(all.read());
    for (int q = 0; q < p; ++q) REQUIRE(gathered[q * n] == static_cast<float>(p * (p - 1) / 2 + p * ((q * n) % 5)));
  }
  {
    Device<T> d{std::vector<T>(n, T(static_cast<float>(r + 3)))};
    c.broadcast(d.p, n, p - 1);
    REQUIRE(as_float(d.read())[n - 1] == static_cast<float>(p + 2));
  }
  {
    // A ring: each rank sends its rank to the next and hears from the previous.
    Device<T> out{std::vector<T>(n, T(static_cast<float>(r)))}, in{std::vector<T>(n)};
    c.send_recv(out.p, n, (r + 1) % p, in.p, n, (r + p - 1) % p);
    REQUIRE(as_float(in.read())[0] == static_cast<float>((r + p - 1) % p));
  }
  c.barrier();
}

// Buffers of megabytes: past one round of the emulator's stand-in (1 MiB a
// rank for collectives, 256 KiB a chunk for sends), and NCCL's own chunking.
void check_large_buffers() {
  NcclCommunicator& c = *g_nccl;
  const int r = c.rank(), p = c.size();
  const size_t n = (size_t{3} << 18) + 7;  // 3 MiB and a bit in fp32
  std::vector<float> mine(n);
  for (size_t i = 0; i < n; ++i) mine[i] = static_cast<float>((r + 1) * (i % 101));
  Device<float> d(mine);
  c.all_reduce_sum(d.p, n);
  const std::vector<float> sum = d.read();
  for (size_t i = 0; i < n; i += 4093) REQUIRE(sum[i] == static_cast<float>(p * (p + 1) / 2 * (i % 101)));
  REQUIRE(sum[n - 1] == static_cast<float>(p * (p + 1) / 2 * ((n - 1) % 101)));
  std::vector<float> whole(n * p);
  for (size_t i = 0; i < whole.size(); ++i) whole[i] = static_cast<float>(r + i % 13);
  Device<float> din(whole), part{std::vector<float>(n)}, gathered{std::vector<float>(n * p)};
  c.reduce_scatter_sum(din.p, part.p, n);
  c.all_gather(part.p, gathered.p, n);
  const std::vector<float> all = gathered.read();
  for (size_t i = 0; i < all.size(); i += 7919) REQUIRE(all[i] == static_cast<float>(p * (p - 1) / 2 + p * (i % 13)));
  REQUIRE(all.back() == static_cast<float>(p * (p - 1) / 2 + p * ((all.size() - 1) % 13)));
  Device<float> out{std::vector<float>(n, static_cast<float>(r))}, in{std::vector<float>(n)};
  c.send_recv(out.p, n, (r + 1) % p, in.p, n, (r + p - 1) % p);
  const std::vector<float> heard = in.read();
  REQUIRE(heard.front() == static_cast<float>((r + p - 1) % p));
  REQUIRE(heard.back() == static_cast<float>((r + p - 1) % p));
  // The interleaved pipeline's exchange: an activation forward and a
  // gradient back, both received, in one group. NCCL has no tags: between
  // two ranks (each the other's next and previous) the sends and receives
  // of a pair match in the order listed, forward first on both.
  Device<float> fwd{std::vector<float>(n, static_cast<float>(r))}, bwd{std::vector<float>(n, static_cast<float>(100 + r))};
  Device<float> from_prev{std::vector<float>(n)}, from_next{std::vector<float>(n)};
  const int next = (r + 1) % p, prev = (r + p - 1) % p;
  c.exchange<float>({Communicator::send_to(fwd.p, n, next, 0), Communicator::recv_from(from_prev.p, n, prev, 0),
                     Communicator::send_to(bwd.p, n, prev, 1), Communicator::recv_from(from_next.p, n, next, 1)});
  const std::vector<float> got_prev = from_prev.read(), got_next = from_next.read();
  REQUIRE(got_prev.front() == static_cast<float>(prev));
  REQUIRE(got_prev.back() == static_cast<float>(prev));
  REQUIRE(got_next.front() == static_cast<float>(100 + next));
  REQUIRE(got_next.back() == static_cast<float>(100 + next));
}

}  // namespace

TEST_CASE("NCCL collectives on device buffers (fp32, bf16), a send_recv ring and a two-way exchange") {
  if (!g_nccl) {
    MESSAGE("no CUDA device here: the NCCL checks are skipped (they run where GPUs are, ctest -L gpu)");
    return;
  }
  MESSAGE("rank " << g_nccl->rank() << " of " << g_nccl->size() << " on GPU " << g_nccl->device());
  check_collectives<float>();
  check_collectives<bf16>();
  check_large_buffers();
}

TEST_CASE("NCCL: host operands are staged (a loss, a gathered host partition); split() makes groups") {
  if (!g_nccl) {
    MESSAGE("no CUDA device here: skipped");
    return;
  }
  NcclCommunicator& c = *g_nccl;
  const int r = c.rank(), p = c.size();
  float loss = static_cast<float>(r + 1);  // host memory
  c.all_reduce_sum(&loss, 1);
  CHECK(loss == static_cast<float>(p * (p + 1) / 2));
  // A host input gathered into a host output.
  std::vector<float> part(3, static_cast<float>(r)), whole(3 * static_cast<size_t>(p), -1.0f);
  c.all_gather(part.data(), whole.data(), 3);
  for (int q = 0; q < p; ++q) CHECK(whole[static_cast<size_t>(q) * 3 + 2] == static_cast<float>(q));
  // Even and odd ranks: each group sums its own members.
  const std::unique_ptr<Communicator> half = c.split(r % 2, r);
  REQUIRE(half);
  float mine = static_cast<float>(r);
  half->all_reduce_sum(&mine, 1);
  float want = 0;
  for (int q = r % 2; q < p; q += 2) want += static_cast<float>(q);
  CHECK(mine == want);
  CHECK(half->size() == (p + 1 - r % 2) / 2);
}

#ifdef ZP_SIMT_HOST
// The emulator's stand-in (tests/simt/nccl.h) refuses what NCCL on a GPU
// would fault or hang on; here each refusal is provoked directly.
TEST_CASE("NCCL stand-in: host buffers, ranks that disagree and mismatched messages are refused") {
  REQUIRE(g_nccl);
  int r = 0, p = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  MPI_Comm_size(MPI_COMM_WORLD, &p);
  ncclUniqueId id;
  if (r == 0) REQUIRE(ncclGetUniqueId(&id) == ncclSuccess);
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t comm = nullptr;
  REQUIRE(ncclCommInitRank(&comm, p, id, r) == ncclSuccess);
  Device<float> d{std::vector<float>(64, 1.0f)};
  std::vector<float> host(64, 1.0f);
  CHECK(ncclAllReduce(host.data(), host.data(), 64, ncclFloat32, ncclSum, comm, nullptr) == ncclInvalidArgument);
  CHECK(ncclAllReduce(d.p, d.p, 65, ncclFloat32, ncclSum, comm, nullptr) == ncclInvalidArgument);  // past the end
  // One rank asks for fewer elements: every rank is told, none hangs.
  const size_t count = r == p - 1 && p > 1 ? 32 : 64;
  CHECK(ncclAllReduce(d.p, d.p, count, ncclFloat32, ncclSum, comm, nullptr) == (p > 1 ? ncclInvalidUsage : ncclSuccess));
  CHECK(ncclGroupStart() == ncclSuccess);
  CHECK(ncclBroadcast(d.p, d.p, 64, ncclFloat32, 0, comm, nullptr) == ncclInvalidUsage);  // collectives are not grouped
  CHECK(ncclGroupEnd() == ncclSuccess);
  if (p > 1) {
    // Rank 0 sends 16 floats to rank 1, which expects 64.
    if (r == 0) CHECK(ncclSend(d.p, 16, ncclFloat32, 1, comm, nullptr) == ncclSuccess);
    if (r == 1) CHECK(ncclRecv(d.p, 64, ncclFloat32, 0, comm, nullptr) == ncclInvalidUsage);
  }
  // A send to oneself within a group, larger than a chunk, arrives whole.
  const size_t big = size_t{1} << 17;  // 512 KiB of fp32
  Device<float> from{std::vector<float>(big, static_cast<float>(r + 5))}, to{std::vector<float>(big)};
  CHECK(ncclGroupStart() == ncclSuccess);
  CHECK(ncclSend(from.p, big, ncclFloat32, r, comm, nullptr) == ncclSuccess);
  CHECK(ncclRecv(to.p, big, ncclFloat32, r, comm, nullptr) == ncclSuccess);
  CHECK(ncclGroupEnd() == ncclSuccess);
  CHECK(to.read()[big - 1] == static_cast<float>(r + 5));
  MPI_Barrier(MPI_COMM_WORLD);
  CHECK(ncclCommDestroy(comm) == ncclSuccess);
}
#endif

int main(int argc, char** argv) {
  MpiSession session(&argc, &argv);
  zp::poison_unwritten() = true;  // as tests/test_main.cc
  int devices = 0;
  if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0) g_nccl = std::make_unique<NcclCommunicator>(MPI_COMM_WORLD);
  doctest::Context context(argc, argv);
  const int failed = context.run();
  g_nccl.reset();
  int any = failed != 0;
  MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any;
}
