// What the per-ISA builds of the uint8 forward (adder_conv2d_u8_impl.inc) share and declare.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cmath>
#include <type_traits>
#include <vector>

#include "adder_conv2d_u8.h"

namespace addernet {
namespace cpu {

// Output channels per micro-tile in every build, so that one weight packing serves them all.
constexpr int kU8MR = 4;
// Bytes of k per block (a multiple of 64): a block of MR weight rows (8 KiB) stays in L1.
constexpr int64_t kU8KC = 2048;
// Bytes the staged input keeps past its end, for loads of 32 bytes that run past a patch's last run.
constexpr int64_t kU8Slack = 64;
static inline int64_t u8_pad32(int64_t k) { return (k + 31) / 32 * 32; }

// A patch is KH runs of KW*Cg contiguous bytes of the staged input (one per kernel row), or KH*KW
// runs of Cg when dilated along the width. Packed weight rows hold each run zero-padded to a
// multiple of 32 bytes, so that a ymm loop never reads another run's weights.
static inline bool u8_row_runs(const ConvShape& s) { return s.DW == 1; }
static inline int64_t u8_run_len(const ConvShape& s) { return u8_row_runs(s) ? s.KW * s.Cg() : s.Cg(); }
static inline int64_t u8_runs(const ConvShape& s) { return u8_row_runs(s) ? s.KH : s.KH * s.KW; }
static inline int64_t u8_row_bytes(const ConvShape& s) { return u8_runs(s) * u8_pad32(u8_run_len(s)); }

// One contiguous piece of a patch: x, its offset from the patch's origin in the staged input; w, its
// offset in a packed weight row; len bytes.
struct U8Seg {
  int64_t x, w, len;
};

// The runs, cut into pieces of at most kU8KC bytes, and grouped into k blocks of at most kU8KC
// padded bytes: block b is seg[block[b]] .. seg[block[b + 1] - 1].
struct U8Segments {
  explicit U8Segments(const ConvShape& s);
  std::vector<U8Seg> seg;
  std::vector<int64_t> block;
  int64_t blocks = 0;
};

#define ADDERNET_U8_DECLARE(NS)                                                               \
  namespace NS {                                                                             \
  int64_t items(const ConvShape& s, int64_t threads);                                        \
  void run(const ConvShape& s, const uint8_t* xs, const uint8_t* wp, const U8Epilogue& ep,   \
           void* y, int64_t begin, int64_t end, int64_t threads, bool wide);                 \
  }
ADDERNET_U8_DECLARE(u8_portable)
#if defined(__x86_64__) || defined(_M_X64)
ADDERNET_U8_DECLARE(u8_avx2)
ADDERNET_U8_DECLARE(u8_avx512)
#endif
#undef ADDERNET_U8_DECLARE

}  // namespace cpu
}  // namespace addernet
