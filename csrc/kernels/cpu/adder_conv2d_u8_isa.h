// What the per-ISA builds of the uint8 forward (adder_conv2d_u8_impl.inc) share and declare.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cmath>

#include "adder_conv2d_u8.h"

namespace addernet {
namespace cpu {

// Output channels per micro-tile in every build, so that one weight packing serves them all.
constexpr int kU8MR = 4;
// Bytes of k per packed block (a multiple of 64): a block of MR weight rows (8 KiB) stays in L1.
constexpr int64_t kU8KC = 2048;
// Bytes the staged input and the packed tiles keep past their end, for copies in 32-byte pieces.
constexpr int64_t kU8Slack = 64;
// Reduction lengths are padded to whole 32-byte halves of a chunk (zeros in both operands add
// nothing): ResNet-20's 16-channel 3x3 patch (144 bytes) runs as 160, not 192.
static inline int64_t u8_k_pad(int64_t k) { return (k + 31) / 32 * 32; }

#define ADDERNET_U8_DECLARE(NS)                                                               \
  namespace NS {                                                                             \
  int64_t items(const ConvShape& s, int64_t threads);                                        \
  void run(const ConvShape& s, const uint8_t* xs, const uint8_t* wp, const U8Epilogue& ep,   \
           void* y, int64_t begin, int64_t end, int64_t threads);                            \
  }
ADDERNET_U8_DECLARE(u8_portable)
#if defined(__x86_64__) || defined(_M_X64)
ADDERNET_U8_DECLARE(u8_avx2)
ADDERNET_U8_DECLARE(u8_avx512)
#endif
#undef ADDERNET_U8_DECLARE

}  // namespace cpu
}  // namespace addernet
