// Unit test of the SIMT emulator itself on toy kernels: built-ins, thread and block orders,
// barriers, the errors it must report (races, unwritten shared reads, barrier divergence,
// barriers after exit, invalid launches) and the ones it must not. Compiled like the project's
// kernels (force-included simt_emu.h, -fsanitize=thread hooks). Prints "N passed, M failed".
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "../../kernels/cuda/launch.cuh"
#include "simt_ctl.h"

namespace {

int g_passed = 0, g_failed = 0;

void expect(bool ok, const char* what) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s\n", what);
  }
}

uint64_t errors(simt::Error e) { return simt::stats().errors[int(e)]; }

__global__ void ids_kernel(unsigned* out) {
  const unsigned b = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[b * (blockDim.x * blockDim.y * blockDim.z) + t] = b * 1000 + t;
}

// Records the order threads run in (the emulator runs one at a time).
__global__ void visit_kernel(unsigned* visit, unsigned* count) {
  visit[(*count)++] = blockIdx.x * 100 + threadIdx.x;
}

// Every thread writes its slot, then reads its neighbour's: correct only with the barrier.
template <bool kSync>
__global__ void neighbour_kernel(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = float(threadIdx.x);
  if (kSync) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}

// Reads one word more than it wrote.
__global__ void unwritten_kernel(float* out) {
  __shared__ float s[65];
  s[threadIdx.x] = 1.f;
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x + 1];
}

// Block 1 reads what block 0 left in shared memory: stale on a GPU, poisoned here.
__global__ void stale_kernel(float* out) {
  __shared__ float s[32];
  if (blockIdx.x == 0) s[threadIdx.x] = 2.f;
  __syncthreads();
  out[blockIdx.x * 32 + threadIdx.x] = s[threadIdx.x];
}

__global__ void divergent_kernel(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.f;
}

__global__ void exit_kernel(float* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

// A tree reduction with its barriers: no race; the same reduction per thread-private slot.
__global__ void reduce_kernel(float* out) {
  __shared__ float red[128];
  red[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  for (unsigned stride = 64; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = red[0];
}

void test_ids() {
  std::vector<unsigned> out(3 * 2 * 2 * 4 * 3 * 2, ~0u);
  ADDERNET_LAUNCH(ids_kernel, dim3(3, 2, 2), dim3(4, 3, 2), 0, nullptr)(out.data());
  expect(cudaGetLastError() == cudaSuccess, "3-D launch succeeds");
  bool ok = true;
  for (unsigned b = 0; b < 12; ++b) {
    for (unsigned t = 0; t < 24; ++t) ok &= out[b * 24 + t] == b * 1000 + t;
  }
  expect(ok, "threadIdx/blockIdx/blockDim/gridDim cover a 3-D grid once each");
}

std::vector<unsigned> visits(simt::Order threads, simt::Order blocks, uint64_t seed) {
  simt::Schedule s;
  s.threads = threads;
  s.blocks = blocks;
  s.seed = seed;
  simt::set_schedule(s);
  std::vector<unsigned> visit(24), count(1, 0);
  ADDERNET_LAUNCH(visit_kernel, 3, 8, 0, nullptr)(visit.data(), count.data());
  simt::set_schedule(simt::Schedule{});
  visit.resize(count[0]);
  return visit;
}

void test_orders() {
  using simt::Order;
  const auto fwd = visits(Order::kForward, Order::kForward, 1);
  std::vector<unsigned> want;
  for (unsigned b = 0; b < 3; ++b) {
    for (unsigned t = 0; t < 8; ++t) want.push_back(b * 100 + t);
  }
  expect(fwd == want, "forward order runs blocks and threads first to last");
  const auto rev = visits(Order::kReverse, Order::kReverse, 1);
  expect(std::equal(rev.begin(), rev.end(), want.rbegin()), "reverse order runs them last to first");
  const auto r1 = visits(Order::kRandom, Order::kRandom, 7), r2 = visits(Order::kRandom, Order::kRandom, 7);
  const auto r3 = visits(Order::kRandom, Order::kRandom, 8);
  auto sorted = r1;
  std::sort(sorted.begin(), sorted.end());
  expect(sorted == want && r1 != want && r1 != rev, "random order is a permutation of both others");
  expect(r1 == r2 && r1 != r3, "random order is fixed by its seed");
}

void test_barriers() {
  std::vector<float> out(64, -1.f);
  const uint64_t races = errors(simt::Error::kRace);
  ADDERNET_LAUNCH(neighbour_kernel<true>, 1, 64, 0, nullptr)(out.data());
  bool ok = true;
  for (unsigned t = 0; t < 64; ++t) ok &= out[t] == float((t + 1) % 64);
  expect(ok && errors(simt::Error::kRace) == races, "a barrier orders shared writes before reads");
  for (simt::Order o : {simt::Order::kForward, simt::Order::kReverse}) {
    simt::Schedule s;
    s.threads = o;
    simt::set_schedule(s);
    const uint64_t before = errors(simt::Error::kRace);
    ADDERNET_LAUNCH(neighbour_kernel<false>, 1, 64, 0, nullptr)(out.data());
    expect(errors(simt::Error::kRace) > before, "a missing barrier is a race in either order");
  }
  simt::set_schedule(simt::Schedule{});
  const uint64_t reds = errors(simt::Error::kRace);
  ADDERNET_LAUNCH(reduce_kernel, 2, 128, 0, nullptr)(out.data());
  expect(out[0] == 127 * 128 / 2 && out[1] == out[0] && errors(simt::Error::kRace) == reds,
         "a tree reduction with barriers sums without races");
}

void test_unwritten() {
  std::vector<float> out(64, 0.f);
  const uint64_t before = errors(simt::Error::kUnwrittenShared);
  ADDERNET_LAUNCH(unwritten_kernel, 1, 64, 0, nullptr)(out.data());
  expect(errors(simt::Error::kUnwrittenShared) == before + 1 && std::isnan(out[63]) &&
             out[62] == 1.f,
         "the one unwritten shared word is reported and reads as NaN");
  std::vector<float> two(64, 0.f);
  const uint64_t stale = errors(simt::Error::kUnwrittenShared);
  ADDERNET_LAUNCH(stale_kernel, 2, 32, 0, nullptr)(two.data());
  expect(errors(simt::Error::kUnwrittenShared) == stale + 32 && two[0] == 2.f && std::isnan(two[32]),
         "shared memory does not carry over from one block to the next");
}

void test_barrier_errors() {
  std::vector<float> out(32);
  uint64_t before = errors(simt::Error::kBarrierDivergence);
  ADDERNET_LAUNCH(divergent_kernel, 1, 32, 0, nullptr)(out.data());
  expect(errors(simt::Error::kBarrierDivergence) == before + 1,
         "threads waiting at different barriers are reported");
  before = errors(simt::Error::kBarrierAfterExit);
  ADDERNET_LAUNCH(exit_kernel, 1, 32, 0, nullptr)(out.data());
  expect(errors(simt::Error::kBarrierAfterExit) == before + 1,
         "a barrier after some threads returned is reported");
}

void test_launch_limits() {
  std::vector<unsigned> out(1);
  const uint64_t launches = errors(simt::Error::kInvalidLaunch);
  const dim3 bad[][2] = {{dim3(1), dim3(1025)},          {dim3(1), dim3(32, 33)},
                         {dim3(1), dim3(1, 1, 65)},      {dim3(0), dim3(32)},
                         {dim3(1, 65536), dim3(32)},     {dim3(1, 1, 65536), dim3(32)},
                         {dim3(1u << 31), dim3(1)}};
  bool all = true;
  for (const auto& cfg : bad) {
    ADDERNET_LAUNCH(ids_kernel, cfg[0], cfg[1], 0, nullptr)(out.data());
    all &= cudaPeekAtLastError() == cudaErrorInvalidConfiguration;
    all &= cudaGetLastError() == cudaErrorInvalidConfiguration;
    all &= cudaGetLastError() == cudaSuccess;  // reading the error clears it
  }
  expect(all && errors(simt::Error::kInvalidLaunch) == launches + 7,
         "launches past the block/grid limits fail with cudaErrorInvalidConfiguration");
  std::vector<unsigned> ok(1024);
  ADDERNET_LAUNCH(ids_kernel, dim3(1), dim3(1024), 0, nullptr)(ok.data());
  expect(cudaGetLastError() == cudaSuccess, "a 1024-thread block is valid");
}

void test_memory() {
  float* d = nullptr;
  const std::vector<float> h = {1.f, 2.f, 3.f};
  std::vector<float> back(3, 0.f);
  bool ok = cudaMalloc(reinterpret_cast<void**>(&d), 3 * sizeof(float)) == cudaSuccess;
  ok &= reinterpret_cast<uintptr_t>(d) % 256 == 0;
  ok &= cudaMemcpy(d, h.data(), 3 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess;
  ok &= cudaMemcpy(back.data(), d, 3 * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
  ok &= back == h && cudaFree(d) == cudaSuccess;
  expect(ok, "cudaMalloc/cudaMemcpy/cudaFree round trip on host memory");
}

}  // namespace

int main() {
  simt::set_report_limit(2);
  test_ids();
  test_orders();
  test_barriers();
  test_unwritten();
  test_barrier_errors();
  test_launch_limits();
  test_memory();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
