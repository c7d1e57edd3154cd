// The uint8 forward's ISA-independent parts (staging, weight packing) and its run-time choice of
// kernel set, which follows the float kernels' (ADDERNET_CPU_ISA forces one).
#include "adder_conv2d_u8_isa.h"

namespace addernet {
namespace cpu {

int64_t ForwardU8::stage_size(const ConvShape& s) {
  return s.G * s.N * (s.H + 2 * s.PH) * (s.W + 2 * s.PW) * s.Cg() + kU8Slack;
}

int64_t ForwardU8::stage_items(const ConvShape& s) { return s.G * s.N; }

// Each input row is first quantised into a contiguous row (a loop the compiler vectorises), then
// scattered Cg bytes apart; quantising in the strided loop itself cost as much as the taps of a
// 16-channel layer.
template <typename T, typename Q>
static void stage_planes(const ConvShape& s, const T* x, uint8_t zero_point, uint8_t* xs,
                         int64_t begin, int64_t end, Q quantise_row) {
  const int64_t Cg = s.Cg(), Hp = s.H + 2 * s.PH, Wp = s.W + 2 * s.PW, HW = s.H * s.W;
  uint8_t* row = new uint8_t[s.W];
  for (int64_t item = begin; item < end; ++item) {
    const int64_t g = item / s.N, n = item % s.N;
    uint8_t* dst = xs + (g * s.N + n) * Hp * Wp * Cg;
    std::memset(dst, zero_point, size_t(Hp * Wp * Cg));
    for (int64_t c = 0; c < Cg; ++c) {
      const T* src = x + (n * s.C + g * Cg + c) * HW;
      for (int64_t yy = 0; yy < s.H; ++yy) {
        quantise_row(src + yy * s.W, row, s.W);
        uint8_t* out = dst + ((yy + s.PH) * Wp + s.PW) * Cg + c;
        for (int64_t xx = 0; xx < s.W; ++xx) out[xx * Cg] = row[xx];
      }
    }
  }
  delete[] row;
}

void ForwardU8::stage(const ConvShape& s, const uint8_t* x, uint8_t zero_point, uint8_t* xs,
                      int64_t begin, int64_t end) {
  stage_planes(s, x, zero_point, xs, begin, end,
               [](const uint8_t* in, uint8_t* out, int64_t w) { std::memcpy(out, in, size_t(w)); });
}

void ForwardU8::stage(const ConvShape& s, const float* x, float input_scale, uint8_t zero_point,
                      uint8_t* xs, int64_t begin, int64_t end) {
  const float zp = float(zero_point);
  stage_planes(s, x, zero_point, xs, begin, end, [=](const float* in, uint8_t* out, int64_t w) {
    // The division (not a multiplication by 1/scale) and half-to-even rounding are torch's
    // fake-quantise arithmetic, so that both sides agree to the bit. NaN becomes 0.
    // Rounding by adding and subtracting 1.5 * 2^23 is round-half-even for |t| < 2^22 and, unlike
    // nearbyint on baseline x86-64 (a libm call), vectorises; t is clamped to +-512 first, which
    // changes no result after the clamp to [0, 255]. NaN fails every comparison and becomes 0.
    const float magic = 12582912.0f;
    for (int64_t i = 0; i < w; ++i) {
      float t = in[i] / input_scale;
      t = t < -512.0f ? -512.0f : (t > 512.0f ? 512.0f : t);
      const float q = ((t + magic) - magic) + zp;
      out[i] = uint8_t(!(q >= 0.0f) ? 0.0f : (q > 255.0f ? 255.0f : q));
    }
  });
}

int64_t ForwardU8::pack_size(const ConvShape& s, const Options&) {
  return s.G * ((s.Og() + kU8MR - 1) / kU8MR * kU8MR) * u8_k_pad(s.K());
}

// wp[g][o][k] = W[g*Og + o][c][u][v] at k = (u*KW + v)*Cg + c; zero past K and past Og.
void ForwardU8::pack(const ConvShape& s, const uint8_t* w, uint8_t* wp, const Options& opt) {
  const int64_t Og = s.Og(), OgP = (Og + kU8MR - 1) / kU8MR * kU8MR, Cg = s.Cg(), K = s.K(),
                Kp = u8_k_pad(K), khw = s.KH * s.KW;
  std::memset(wp, 0, size_t(pack_size(s, opt)));
  for (int64_t g = 0; g < s.G; ++g)
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < khw; ++t)
          wp[(g * OgP + o) * Kp + t * Cg + c] = w[((g * Og + o) * Cg + c) * khw + t];
}

int64_t ForwardU8::work_items(const ConvShape& s, const Options& opt) {
  switch (opt.isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx512: return u8_avx512::items(s, opt.threads);
    case Isa::avx2: return u8_avx2::items(s, opt.threads);
#endif
    default: return u8_portable::items(s, opt.threads);
  }
}

void ForwardU8::run(const ConvShape& s, const uint8_t* xs, const uint8_t* wp, const U8Epilogue& ep,
                    void* y, int64_t begin, int64_t end, const Options& opt) {
  switch (opt.isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx512: return u8_avx512::run(s, xs, wp, ep, y, begin, end, opt.threads);
    case Isa::avx2: return u8_avx2::run(s, xs, wp, ep, y, begin, end, opt.threads);
#endif
    default: return u8_portable::run(s, xs, wp, ep, y, begin, end, opt.threads);
  }
}

}  // namespace cpu
}  // namespace addernet
