// Raw CPU kernels of the uint8 adder convolution, for quantised inference: acc = sum |qx - qw| in
// 32 bits, then an epilogue. No torch headers, like the float kernels beside it.
//
// X and W share one scale s and zero point z (x = s*(qx - z), w = s*(qw - z)), so that
// |x - w| = s*|qx - qw| exactly; padded taps hold z, so that they add |w| as the float op's zeros do.
//
// The reduction runs over channels-last patches, k = (u*KW + v)*Cg + c: the input is staged once
// into a padded channels-last copy, from which each patch row (u) is one contiguous run of
// KW*Cg bytes (Cg bytes per tap when dilated), and a sum of absolute byte differences
// (vpsadbw: 64 taps an instruction on AVX-512BW, 32 on AVX2) walks it. Each vpsadbw result (at
// most 8*255 per 64-bit lane) is widened into 64-bit accumulators at once, so no 16-bit partial
// sum is ever carried.
#pragma once

#include <cstdint>

#include "adder_conv2d_cpu.h"

namespace addernet {
namespace cpu {

// The reduction length above which the int32 result could overflow: 255 * K < 2^31.
constexpr int64_t kU8MaxK = (int64_t(1) << 31) / 255 - 1;

enum class U8Out { raw = 0, f32 = 1, u8 = 2 };

// What the forward writes, per output channel o:
//   raw: int32  -acc
//   f32: float  v = relu?(-acc * scale[o] + shift[o])      (scale 1 and shift 0 when null)
//   u8:  uint8  clamp(round_half_even(v * (1 / out_scale)) + out_zero_point, 0, 255)
struct U8Epilogue {
  U8Out kind = U8Out::raw;
  const float* scale = nullptr;
  const float* shift = nullptr;
  bool relu = false;
  float out_scale = 1.0f;
  int32_t out_zero_point = 0;
};

// The vector width of the AVX-512 build's SAD loop: zmm (64 taps a vpsadbw) or ymm under
// AVX-512VL (32 taps, still 32 registers). Zen 4 runs a zmm instruction as two 256-bit halves, so
// there a zmm vpsadbw costs two ymm ones, and wastes half of one on every run whose length is not a
// multiple of 64 (ResNet-20's 48- and 96-byte rows, LeNet's 30): ymm is never slower there.
// Elsewhere zmm. The other builds have one width.
enum class U8Vec { automatic = 0, ymm = 1, zmm = 2 };
const char* u8_vec_name(U8Vec v);
U8Vec u8_vec_default();  // ymm on AMD family 0x19 (Zen 4, the family's only AVX-512 cores), else zmm
// ADDERNET_U8_VECTOR=ymm|zmm forces one (tests run both); unset or empty means automatic.
// Returns false and leaves `out` alone when the variable names neither.
bool u8_vec_from_env(U8Vec* out, const char** error);

struct ForwardU8 {
  // Staging: the input as [G][N][H + 2PH][W + 2PW][Cg] bytes, padding = zero_point. A float
  // input is quantised on the way, qx = clamp(round_half_even(x / input_scale) + zero_point,
  // 0, 255). Work items are (group, image) planes.
  static int64_t stage_size(const ConvShape& s);
  static int64_t stage_items(const ConvShape& s);
  static void stage(const ConvShape& s, const uint8_t* x, uint8_t zero_point, uint8_t* xs,
                    int64_t begin, int64_t end);
  // The float staging returns false when an item held a NaN or an infinity: no byte stands for
  // either, so the caller must refuse the input rather than return a finite answer for it.
  static bool stage(const ConvShape& s, const float* x, float input_scale, uint8_t zero_point,
                    uint8_t* xs, int64_t begin, int64_t end);
  // Weights (O, Cg, KH, KW) reordered to channels-last patch rows, each run padded with zeros to
  // 32 bytes (which the kernels' masked patch loads match with zeros, adding nothing).
  static int64_t pack_size(const ConvShape& s, const Options& opt);
  // channels_last: w is stored (O, KH, KW, Cg), as torch's channels_last memory format keeps it.
  static void pack(const ConvShape& s, const uint8_t* w, uint8_t* wpack, const Options& opt,
                   bool channels_last = false);
  static int64_t work_items(const ConvShape& s, const Options& opt);
  // y is int32, float or uint8 NCHW, as ep.kind says.
  static void run(const ConvShape& s, const uint8_t* xs, const uint8_t* wpack, const U8Epilogue& ep,
                  void* y, int64_t begin, int64_t end, const Options& opt, U8Vec vec = U8Vec::automatic);
};

}  // namespace cpu
}  // namespace addernet
