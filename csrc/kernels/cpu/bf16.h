// bfloat16 <-> float conversions on raw bits (round to nearest even, NaN kept quiet).
#pragma once

#include <cstdint>
#include <cstring>

#include "adder_conv2d_cpu.h"

namespace addernet {
namespace cpu {

static inline float to_float(bf16 v) {
  uint32_t b = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

static inline bf16 to_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return bf16{uint16_t((b >> 16) | 0x40u)};
  b += 0x7fffu + ((b >> 16) & 1u);
  return bf16{uint16_t(b >> 16)};
}

// The compute type of an input type: bf16 is widened to float, float and double are kept.
template <typename T> struct ComputeType { using type = T; };
template <> struct ComputeType<bf16> { using type = float; };

static inline float widen(float v) { return v; }
static inline double widen(double v) { return v; }
static inline float widen(bf16 v) { return to_float(v); }
static inline void narrow(float v, float* out) { *out = v; }
static inline void narrow(double v, double* out) { *out = v; }
static inline void narrow(float v, bf16* out) { *out = to_bf16(v); }

}  // namespace cpu
}  // namespace addernet
