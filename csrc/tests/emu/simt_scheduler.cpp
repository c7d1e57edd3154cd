// Scheduler of the SIMT emulation (simt_emu.h): one grid at a time, one block at a time, one
// fiber per CUDA thread. A fiber runs until it reaches __syncthreads() or returns; when no
// fiber can run, the barrier releases if every live thread waits at the same call site.
//
// Context switch: x86-64 assembly that saves the callee-saved registers, MXCSR and the x87
// control word (no syscalls: glibc's swapcontext makes two sigprocmask calls per switch, about
// 50x slower); ucontext elsewhere, or with -DSIMT_UCONTEXT (CI builds both).
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "simt_internal.h"

#if !defined(__x86_64__) && !defined(SIMT_UCONTEXT)
#define SIMT_UCONTEXT 1
#endif
#ifdef SIMT_UCONTEXT
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SIMT_ASAN 1
#endif

namespace simt {

// Kernel code reads these; they live in .data, away from the .bss range whose words
// simt_shared.cpp treats as shared memory.
#define SIMT_NOT_BSS __attribute__((section(".data")))
SIMT_NOT_BSS const uint3* g_tid = nullptr;
SIMT_NOT_BSS uint3 g_blockIdx;
SIMT_NOT_BSS dim3 g_blockDim;
SIMT_NOT_BSS dim3 g_gridDim;

namespace detail {
uint32_t g_thread = kNoThread;
uint32_t g_epoch = 0;
uint32_t g_block_serial = 0;
const LaunchCfg* g_launch = nullptr;
Schedule g_schedule;
const char* g_epoch_file = nullptr;
int g_epoch_line = 0;
}  // namespace detail

using namespace detail;

namespace {

enum State { kRunnable, kBarrier, kDone };

#ifndef SIMT_UCONTEXT
extern "C" void simt_swap(void** save, void* load);
extern "C" void simt_trampoline();
asm(R"(
  .text
  .globl simt_swap
  .type simt_swap,@function
simt_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_swap, .-simt_swap
  .globl simt_trampoline
  .type simt_trampoline,@function
simt_trampoline:
  callq *%r13
  ud2
  .size simt_trampoline, .-simt_trampoline
)");
#endif

struct Fiber {
#ifdef SIMT_UCONTEXT
  ucontext_t ctx;
#else
  void* sp;
#endif
  uint3 tid;
  State state;
  const char* bfile;
  int bline;
  char* stack;
  void* fake;  // ASan's fake stack of this fiber
};

constexpr size_t kStack = 256 * 1024;
#ifdef SIMT_UCONTEXT
ucontext_t g_sched;
#else
void* g_sched_sp;
#endif
std::vector<Fiber> g_fibers;
// Frees the fiber stacks at exit, before g_fibers goes (LeakSanitizer checks after that).
struct StackReleaser {
  ~StackReleaser() {
    for (Fiber& f : g_fibers) std::free(f.stack);
  }
} g_stack_releaser;
Fiber* g_cur = nullptr;
void (*g_thunk)(void*) = nullptr;
void* g_ctx = nullptr;
cudaError_t g_last = cudaSuccess;
Stats g_stats;
int g_report_limit = 5;
uint64_t g_reported[int(Error::kCount)] = {};

#ifdef SIMT_ASAN
// ASan tracks which stack is live; it is told about every switch (and keeps a fake stack per
// context for use-after-return detection).
void* g_sched_fake = nullptr;
const void* g_main_bottom = nullptr;
size_t g_main_size = 0;
#endif

void fiber_body() {
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g_main_bottom, &g_main_size);
#endif
  g_thunk(g_ctx);
  g_cur->state = kDone;
}

void to_scheduler(Fiber* f) {
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(f->state == kDone ? nullptr : &f->fake, g_main_bottom,
                                 g_main_size);
#endif
#ifdef SIMT_UCONTEXT
  swapcontext(&f->ctx, &g_sched);
#else
  simt_swap(&f->sp, g_sched_sp);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(f->fake, nullptr, nullptr);
#endif
}

#ifdef SIMT_UCONTEXT
void fiber_entry() {
  fiber_body();
  to_scheduler(g_cur);  // never resumed
  std::abort();
}
#else
void fiber_main() {
  fiber_body();
  to_scheduler(g_cur);  // never resumed
  __builtin_trap();
}
#endif

void fiber_init(Fiber& f) {
#ifdef SIMT_UCONTEXT
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack;
  f.ctx.uc_stack.ss_size = kStack;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, fiber_entry, 0);
#else
  // Frame simt_swap pops: [mxcsr|fpcw] r15 r14 r13 r12 rbx rbp ret; after ret rsp is
  // 16-aligned + 8 as at a function entry, once the trampoline's call has pushed.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStack) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top - 64 - 16);
  sp[0] = 0x1F80ull | (0x037Full << 32);
  sp[1] = 0; sp[2] = 0;                                  // r15 r14
  sp[3] = reinterpret_cast<uint64_t>(&fiber_main);       // r13: what the trampoline calls
  sp[4] = 0; sp[5] = 0; sp[6] = 0;                       // r12 rbx rbp
  sp[7] = reinterpret_cast<uint64_t>(&simt_trampoline);  // return address
  f.sp = sp;
#endif
}

void resume(Fiber& f) {
  g_cur = &f;
  g_tid = &f.tid;
  g_thread = uint32_t(&f - g_fibers.data());
  ++g_stats.resumes;
#ifdef SIMT_ASAN
  __sanitizer_start_switch_fiber(&g_sched_fake, f.stack, kStack);
#endif
#ifdef SIMT_UCONTEXT
  swapcontext(&g_sched, &f.ctx);
#else
  simt_swap(&g_sched_sp, f.sp);
#endif
#ifdef SIMT_ASAN
  __sanitizer_finish_switch_fiber(g_sched_fake, nullptr, nullptr);
#endif
  g_thread = kNoThread;
}

void order_indices(std::vector<uint32_t>& v, uint32_t n, Order o, std::mt19937_64& rng) {
  v.resize(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = i;
  if (o == Order::kReverse) std::reverse(v.begin(), v.end());
  if (o == Order::kRandom) std::shuffle(v.begin(), v.end(), rng);
}

// Launch-configuration limits every GPU since sm_70 shares.
bool valid_config(const LaunchCfg& c) {
  const dim3 g = c.grid, b = c.block;
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  return g.x && g.y && g.z && b.x && b.y && b.z && threads <= 1024 && b.x <= 1024 &&
         b.y <= 1024 && b.z <= 64 && g.x <= 0x7fffffffu && g.y <= 65535 && g.z <= 65535;
}

}  // namespace

namespace detail {

bool count_unless_printed(Error kind) {
  if (g_reported[int(kind)] < uint64_t(g_report_limit)) return true;
  ++g_stats.errors[int(kind)];
  return false;
}

void report(Error kind, const char* fmt, ...) {
  const int k = int(kind);
  ++g_stats.errors[k];
  if (g_reported[k] >= uint64_t(g_report_limit)) return;
  ++g_reported[k];
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (g_launch && g_tid) {
    std::fprintf(stderr, "SIMT %s: %s, launched at %s:%d, block (%u,%u,%u): %s\n",
                 error_name(kind), g_launch->kernel, g_launch->file, g_launch->line,
                 g_blockIdx.x, g_blockIdx.y, g_blockIdx.z, msg);
  } else if (g_launch) {
    std::fprintf(stderr, "SIMT %s: %s, launched at %s:%d: %s\n", error_name(kind),
                 g_launch->kernel, g_launch->file, g_launch->line, msg);
  } else {
    std::fprintf(stderr, "SIMT %s: %s\n", error_name(kind), msg);
  }
}

const char* thread_name(uint32_t t, char (&buf)[48]) {
  const dim3 b = g_blockDim;
  std::snprintf(buf, sizeof buf, "(%u,%u,%u)", t % b.x, (t / b.x) % b.y, t / (b.x * b.y));
  return buf;
}

}  // namespace detail

const char* error_name(Error e) {
  switch (e) {
    case Error::kRace: return "shared-memory race";
    case Error::kUnwrittenShared: return "read of unwritten shared memory";
    case Error::kBarrierDivergence: return "barrier divergence";
    case Error::kBarrierAfterExit: return "barrier after exit";
    case Error::kInvalidLaunch: return "invalid launch";
    default: return "?";
  }
}

uint64_t Stats::total_errors() const {
  uint64_t n = 0;
  for (uint64_t e : errors) n += e;
  return n;
}

void set_schedule(const Schedule& s) { g_schedule = s; }
Schedule get_schedule() { return g_schedule; }
Stats& stats() { return g_stats; }
void set_report_limit(int per_kind) {
  g_report_limit = per_kind;
  std::fill(std::begin(g_reported), std::end(g_reported), 0);
}

std::string describe(const Schedule& s) {
  auto name = [](Order o) {
    return o == Order::kForward ? "forward" : o == Order::kReverse ? "reverse" : "random";
  };
  std::string d = std::string("threads ") + name(s.threads) + ", blocks " + name(s.blocks);
  if (s.threads == Order::kRandom || s.blocks == Order::kRandom) {
    d += ", seed " + std::to_string(s.seed);
  }
  return d;
}

void syncthreads(const char* file, int line) {
  if (g_cur == nullptr) {
    std::fprintf(stderr, "SIMT: __syncthreads() at %s:%d called outside a kernel\n", file, line);
    std::abort();
  }
  Fiber* f = g_cur;
  f->state = kBarrier;
  f->bfile = file;
  f->bline = line;
  to_scheduler(f);
}

void run_grid(const LaunchCfg& cfg, void (*thunk)(void*), void* ctx) {
  ++g_stats.launches;
  g_launch = &cfg;
  g_blockIdx = uint3{0, 0, 0};
  if (!valid_config(cfg)) {
    g_last = cudaErrorInvalidConfiguration;
    report(Error::kInvalidLaunch, "grid (%u,%u,%u) block (%u,%u,%u)", cfg.grid.x, cfg.grid.y,
           cfg.grid.z, cfg.block.x, cfg.block.y, cfg.block.z);
    g_launch = nullptr;
    return;
  }
  if (cfg.smem > 0) {
    std::fprintf(stderr, "SIMT: %s at %s:%d: dynamic shared memory is not emulated\n",
                 cfg.kernel, cfg.file, cfg.line);
    std::abort();
  }
  const dim3 g = cfg.grid, b = cfg.block;
  const uint32_t nthreads = b.x * b.y * b.z;
  const uint64_t nblocks = uint64_t(g.x) * g.y * g.z;
  if (g_fibers.size() < nthreads) {
    const size_t old = g_fibers.size();
    g_fibers.resize(nthreads);
    for (size_t t = old; t < nthreads; ++t) {
      g_fibers[t].stack = static_cast<char*>(std::malloc(kStack));
    }
  }
  g_thunk = thunk;
  g_ctx = ctx;
  g_blockDim = b;
  g_gridDim = g;
  std::mt19937_64 rng(g_schedule.seed);
  std::vector<uint64_t> blocks;
  if (g_schedule.blocks == Order::kRandom) {
    blocks.resize(nblocks);
    for (uint64_t i = 0; i < nblocks; ++i) blocks[i] = i;
    std::shuffle(blocks.begin(), blocks.end(), rng);
  }
  std::vector<uint32_t> order;
  for (uint64_t bi = 0; bi < nblocks; ++bi) {
    const uint64_t lin = g_schedule.blocks == Order::kForward   ? bi
                         : g_schedule.blocks == Order::kReverse ? nblocks - 1 - bi
                                                                : blocks[bi];
    g_blockIdx.x = unsigned(lin % g.x);
    g_blockIdx.y = unsigned((lin / g.x) % g.y);
    g_blockIdx.z = unsigned(lin / (uint64_t(g.x) * g.y));
    ++g_block_serial;
    ++g_epoch;
    g_epoch_file = nullptr;
    g_epoch_line = 0;
    for (uint32_t t = 0; t < nthreads; ++t) {
      Fiber& f = g_fibers[t];
      f.tid = uint3{t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
      f.state = kRunnable;
      f.fake = nullptr;
      fiber_init(f);
    }
    ++g_stats.blocks;
    g_stats.threads += nthreads;
    for (;;) {
      order_indices(order, nthreads, g_schedule.threads, rng);
      for (uint32_t t : order) {
        if (g_fibers[t].state == kRunnable) resume(g_fibers[t]);
      }
      uint32_t waiting = 0, done = 0;
      const Fiber* first = nullptr;
      bool diverged = false;
      for (uint32_t t = 0; t < nthreads; ++t) {
        const Fiber& f = g_fibers[t];
        if (f.state == kDone) {
          ++done;
        } else if (!first) {
          ++waiting;
          first = &f;
        } else {
          ++waiting;
          if (!diverged && (f.bline != first->bline || std::strcmp(f.bfile, first->bfile))) {
            char a[48], c[48];
            report(Error::kBarrierDivergence, "thread %s waits at %s:%d, thread %s at %s:%d",
                   thread_name(uint32_t(first - g_fibers.data()), a), first->bfile,
                   first->bline, thread_name(t, c), f.bfile, f.bline);
            diverged = true;
          }
        }
      }
      if (waiting == 0) break;
      if (done > 0) {
        report(Error::kBarrierAfterExit, "%u threads returned while %u wait at %s:%d", done,
               waiting, first->bfile, first->bline);
      }
      ++g_stats.barriers;
      ++g_epoch;
      g_epoch_file = first->bfile;
      g_epoch_line = first->bline;
      // A diverged block is released all the same: the report is the finding, and the run
      // goes on so the driver can count the rest.
      for (uint32_t t = 0; t < nthreads; ++t) {
        if (g_fibers[t].state == kBarrier) g_fibers[t].state = kRunnable;
      }
    }
  }
  g_cur = nullptr;
  g_tid = nullptr;
  g_launch = nullptr;
  g_last = cudaSuccess;
}

}  // namespace simt

extern "C" {
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = simt::g_last;
  simt::g_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return simt::g_last; }
}
