// Shared-memory checks of the SIMT emulation: a race detector per barrier epoch and a check
// that a block reads only the shared words it wrote (others read as NaN: 0xFF bytes).
//
// The kernel sources are compiled with -fsanitize=thread and linked without the TSan runtime,
// so every load and store the compiler emits calls one of the __tsan_* hooks below. An access
// counts when it comes from a fiber (a CUDA thread) and lands in the executable's .bss, where
// the `static` __shared__ arrays are; the kernel objects hold no other zero-initialised data
// their device code touches (fiber stacks and "device" buffers are heap memory).
//
// Per 4-byte shared word the shadow keeps the last writer and reader(s) with their epoch and
// code address. Within one epoch (between two barriers of a block), a word written by one
// thread and read or written by another is a race: the GPU orders nothing between them. This
// does not depend on the order the fibers ran in, so it finds missing barriers that two
// schedules happen to agree on.
//
// Limits: words are 4 bytes, so two threads writing the two halves of one word of a 2-byte
// shared array would be reported (the project's kernels stage float and int64 only); shared
// memory reached through memcpy/memset calls is not seen; a `__device__` global would be taken
// for shared memory (the kernels have none); global memory is not checked (the drivers compare
// schedules and poison outputs for that).
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "simt_internal.h"

extern "C" char __bss_start[];
extern "C" char _end[];

namespace simt::detail {
namespace {

constexpr uint16_t kNobody = 0xFFFF;

// Two distinct readers per epoch are enough: a writer differs from at least one of them.
struct Word {
  uint32_t w_epoch = 0, r_epoch = 0;
  uint32_t block = 0;  // block serial of the last write
  uint16_t writer = 0, reader = 0, reader2 = kNobody;
  const void* w_pc = nullptr;
  const void* r_pc = nullptr;
  const void* r2_pc = nullptr;
};

const uintptr_t g_lo = reinterpret_cast<uintptr_t>(__bss_start) & ~uintptr_t(3);
const uintptr_t g_span = reinterpret_cast<uintptr_t>(_end) - g_lo;
std::vector<Word> g_shadow((g_span + 3) / 4);

// "file:line" of a code address (addr2line on this executable, cached), for the reports.
std::string where(const void* pc) {
  static std::map<const void*, std::string> cache;
  auto it = cache.find(pc);
  if (it != cache.end()) return it->second;
  std::string out = "?";
  Dl_info info;
  if (pc && dladdr(pc, &info) && info.dli_fname) {
    char cmd[1200];
    // The return address is the instruction after the access: step back one byte.
    const uintptr_t off = reinterpret_cast<uintptr_t>(pc) - 1 -
                          reinterpret_cast<uintptr_t>(info.dli_fbase);
    std::snprintf(cmd, sizeof cmd, "addr2line -e '%s' 0x%lx 2>/dev/null", info.dli_fname,
                  static_cast<unsigned long>(off));
    if (FILE* p = popen(cmd, "r")) {
      char line[1024];
      if (std::fgets(line, sizeof line, p)) {
        out = line;
        while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
        const size_t c = out.find("csrc/");
        if (c != std::string::npos) out = out.substr(c);
        const size_t d = out.find(" (discriminator");
        if (d != std::string::npos) out = out.substr(0, d);
      }
      pclose(p);
    }
  }
  return cache[pc] = out;
}

std::string epoch_start() {
  if (!g_epoch_file) return "the block's start";
  return std::string("the barrier at ") + g_epoch_file + ":" + std::to_string(g_epoch_line);
}

// other (the earlier access, at other_pc) and the running thread (now, at pc) touched the same
// word with no barrier between them.
void race(const char* other_did, uint32_t other, const void* other_pc, const char* now_does,
          const void* pc) {
  if (!count_unless_printed(Error::kRace)) return;  // counted; spare the formatting
  char a[48], b[48];
  report(Error::kRace, "thread %s %s at %s, thread %s %s at %s, no barrier between (since %s)",
         thread_name(other, a), other_did, where(other_pc).c_str(), thread_name(g_thread, b),
         now_does, where(pc).c_str(), epoch_start().c_str());
}

inline void access(const void* addr, size_t size, bool write, const void* pc) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (a - g_lo >= g_span || g_thread == kNoThread || !g_schedule.check_shared) return;
  ++stats().shared_accesses;
  const uint16_t t = uint16_t(g_thread);
  const uintptr_t end = std::min<uintptr_t>(a + size, g_lo + g_span);
  for (uintptr_t w = (a - g_lo) / 4; w < (end - g_lo + 3) / 4; ++w) {
    Word& s = g_shadow[w];
    if (write) {
      if (s.w_epoch == g_epoch && s.writer != t) {
        race("wrote", s.writer, s.w_pc, "writes", pc);
      } else if (s.r_epoch == g_epoch && s.reader != t) {
        race("read", s.reader, s.r_pc, "writes", pc);
      } else if (s.r_epoch == g_epoch && s.reader2 != kNobody) {
        race("read", s.reader2, s.r2_pc, "writes", pc);
      }
      s.w_epoch = g_epoch;
      s.writer = t;
      s.w_pc = pc;
      s.block = g_block_serial;
      continue;
    }
    if (s.block != g_block_serial) {
      if (count_unless_printed(Error::kUnwrittenShared)) {
        char n[48];
        report(Error::kUnwrittenShared, "thread %s at %s reads a word this block never wrote",
               thread_name(t, n), where(pc).c_str());
      }
      std::memset(reinterpret_cast<void*>(g_lo + w * 4), 0xFF, 4);
      s.block = g_block_serial;
      s.w_epoch = 0;
    } else if (s.w_epoch == g_epoch && s.writer != t) {
      race("wrote", s.writer, s.w_pc, "reads", pc);
    }
    if (s.r_epoch != g_epoch) {
      s.r_epoch = g_epoch;
      s.reader = t;
      s.r_pc = pc;
      s.reader2 = kNobody;
    } else if (s.reader != t && s.reader2 == kNobody) {
      s.reader2 = t;
      s.r2_pc = pc;
    }
  }
}

}  // namespace
}  // namespace simt::detail

// The hooks GCC's and Clang's -fsanitize=thread instrumentation calls.
#define SIMT_HOOK(name, size, write)                                               \
  extern "C" void name(void* p) {                                                  \
    simt::detail::access(p, size, write, __builtin_return_address(0));             \
  }
#define SIMT_HOOKS(n)                                  \
  SIMT_HOOK(__tsan_read##n, n, false)                  \
  SIMT_HOOK(__tsan_write##n, n, true)                  \
  SIMT_HOOK(__tsan_unaligned_read##n, n, false)        \
  SIMT_HOOK(__tsan_unaligned_write##n, n, true)        \
  SIMT_HOOK(__tsan_volatile_read##n, n, false)         \
  SIMT_HOOK(__tsan_volatile_write##n, n, true)
SIMT_HOOKS(1)
SIMT_HOOKS(2)
SIMT_HOOKS(4)
SIMT_HOOKS(8)
SIMT_HOOKS(16)
// Signatures as GCC's built-in declarations of them.
extern "C" void __tsan_read_range(void* p, long n) {
  simt::detail::access(p, n, false, __builtin_return_address(0));
}
extern "C" void __tsan_write_range(void* p, long n) {
  simt::detail::access(p, n, true, __builtin_return_address(0));
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit(void*) {}
