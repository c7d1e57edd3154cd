// SIMT emulation of CUDA for the host: force-included (g++ -include) into the project's CUDA
// sources so that they compile with g++ against the CUDA toolkit's headers and run on the CPU.
//
// Model: "device" memory is host memory; a grid runs one block at a time, so __shared__ can be
// a static variable; the threads of a block are fibers on one OS thread, each run until it
// reaches __syncthreads() or exits (simt_scheduler.cpp). Kernel launches are written
// ADDERNET_LAUNCH(kernel, grid, block, smem, stream)(args) (csrc/kernels/cuda/launch.cuh),
// which expands to ::simt::launch(...) here and to <<<...>>> under nvcc, so no source is
// rewritten and every __FILE__/__LINE__ is the real one.
//
// Kernel sources are compiled with -fsanitize=thread but linked without the TSan runtime: the
// compiler's __tsan_readN/__tsan_writeN calls land in simt_race.cpp, which checks shared
// memory (races per barrier epoch, reads of words the block never wrote, NaN-poisoning them).
#pragma once

#define ADDERNET_SIMT_EMU 1

// Qualifiers first: crt/host_defines.h keeps macros already defined when __CUDACC__ is unset.
#define __host__
#define __device__
#define __global__
#define __constant__ static
// static: one copy per kernel instantiation, valid since blocks run one at a time.
#define __shared__ static

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#undef __launch_bounds__
#define __launch_bounds__(...)

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

// The device side of `#ifdef __CUDA_ARCH__` branches is the one compiled (after the toolkit
// headers, whose own device paths are inline assembly). Intrinsics those branches use follow.
#define __CUDA_ARCH__ 900
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}

namespace simt {

extern const uint3* g_tid;  // the running fiber's threadIdx
extern uint3 g_blockIdx;
extern dim3 g_blockDim, g_gridDim;

struct LaunchCfg {
  const char* kernel;  // the kernel expression as written at the launch site
  const char* file;
  int line;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};

void syncthreads(const char* file, int line);
// Runs thunk(ctx) once per thread of every block; sets cudaGetLastError's status.
void run_grid(const LaunchCfg& cfg, void (*thunk)(void*), void* ctx);

template <typename... P>
struct Launcher {
  void (*kernel)(P...);
  LaunchCfg cfg;
  template <typename... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    // Converted to the parameter types once on the "host", like a real launch.
    std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
    struct Ctx {
      void (*k)(P...);
      const std::tuple<std::decay_t<P>...>* args;
    } ctx{kernel, &args};
    run_grid(cfg,
             [](void* p) {
               const auto* c = static_cast<const Ctx*>(p);
               auto copy = *c->args;  // each thread gets its own by-value parameters
               std::apply(c->k, copy);
             },
             &ctx);
  }
};

template <typename... P>
Launcher<P...> launch(const char* kernel_text, const char* file, int line, void (*kernel)(P...),
                      dim3 grid, dim3 block, size_t smem, cudaStream_t stream) {
  return Launcher<P...>{kernel, LaunchCfg{kernel_text, file, line, grid, block, smem, stream}};
}

}  // namespace simt

#define threadIdx (static_cast<const uint3&>(*::simt::g_tid))
#define blockIdx (static_cast<const uint3&>(::simt::g_blockIdx))
#define blockDim (static_cast<const dim3&>(::simt::g_blockDim))
#define gridDim (static_cast<const dim3&>(::simt::g_gridDim))
#define __syncthreads() ::simt::syncthreads(__FILE__, __LINE__)
