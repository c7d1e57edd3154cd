// The uint8 forward's ISA-independent parts (staging, weight packing, patch segments) and its
// run-time choice of kernel set and vector width, which follows the float kernels' (ADDERNET_CPU_ISA forces one).
#include "adder_conv2d_u8_isa.h"

#include <type_traits>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace addernet {
namespace cpu {

int64_t ForwardU8::stage_size(const ConvShape& s) {
  return s.G * s.N * (s.H + 2 * s.PH) * (s.W + 2 * s.PW) * s.Cg() + kU8Slack;
}

int64_t ForwardU8::stage_items(const ConvShape& s) { return s.G * s.N; }

// dst[x*ds + c] = src[c*ss + x] for c < rows, x < cols. On x86-64, 16x16 blocks go through four
// rounds of SSE2 unpacks (baseline, so in every build); a last block overlaps the one before it
// rather than leave an edge (it rewrites the same bytes). Fewer than 16 rows or columns go byte by
// byte. A byte scattered Cg apart per store cost 0.7 ns a byte, 15% of a ResNet-18 layer's time.
static void transpose_bytes(const uint8_t* src, int64_t ss, int64_t rows, int64_t cols, uint8_t* dst, int64_t ds) {
#if defined(__SSE2__)
  if (rows >= 16 && cols >= 16) {
    for (int64_t cb = 0; cb < rows; cb += 16)
      for (int64_t xb = 0; xb < cols; xb += 16) {
        const int64_t c0 = cb + 16 <= rows ? cb : rows - 16, x0 = xb + 16 <= cols ? xb : cols - 16;
        __m128i r[16], t[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (c0 + i) * ss + x0));
        // Interleaving row i with row i + 8, four times over, transposes a 16x16 block.
        for (int round = 0; round < 4; ++round) {
          for (int i = 0; i < 8; ++i) {
            t[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
            t[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
          }
          for (int i = 0; i < 16; ++i) r[i] = t[i];
        }
        for (int i = 0; i < 16; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (x0 + i) * ds + c0), r[i]);
      }
    return;
  }
#endif
  for (int64_t c = 0; c < rows; ++c)
    for (int64_t x = 0; x < cols; ++x) dst[x * ds + c] = src[c * ss + x];
}

// The same for fewer than 16 rows (channels) into a contiguous dst (ds = rows), cols >= 16: a 16x16
// block with zero rows added, each column stored as 16 bytes whose excess the next column's store
// overwrites; a store that would run past the end of dst writes its rows bytes only.
static void transpose_narrow(const uint8_t* src, int64_t ss, int64_t rows, int64_t cols, uint8_t* dst) {
#if defined(__SSE2__)
  const int64_t end = cols * rows;
  for (int64_t xb = 0; xb < cols; xb += 16) {
    const int64_t x0 = xb + 16 <= cols ? xb : cols - 16;
    __m128i r[16], t[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i * ss + x0)) : _mm_setzero_si128();
    for (int round = 0; round < 4; ++round) {
      for (int i = 0; i < 8; ++i) {
        t[2 * i] = _mm_unpacklo_epi8(r[i], r[i + 8]);
        t[2 * i + 1] = _mm_unpackhi_epi8(r[i], r[i + 8]);
      }
      for (int i = 0; i < 16; ++i) r[i] = t[i];
    }
    for (int i = 0; i < 16; ++i) {
      uint8_t* d = dst + (x0 + i) * rows;
      if (d + 16 <= dst + end) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(d), r[i]);
      } else {
        alignas(16) uint8_t tmp[16];
        _mm_store_si128(reinterpret_cast<__m128i*>(tmp), r[i]);
        std::memcpy(d, tmp, size_t(rows));
      }
    }
  }
#else
  for (int64_t c = 0; c < rows; ++c)
    for (int64_t x = 0; x < cols; ++x) dst[x * rows + c] = src[c * ss + x];
#endif
}

// Per input row yy, the Cg channels' rows are transposed into the row's channels-last bytes. A float
// input is first quantised, the whole (group, image) plane in one loop (which the compiler
// vectorises; a call per row of 8-32 values cost more than the quantising).
template <typename T, typename Q>
static void stage_planes(const ConvShape& s, const T* x, uint8_t zero_point, uint8_t* xs,
                         int64_t begin, int64_t end, Q quantise) {
  const int64_t Cg = s.Cg(), Hp = s.H + 2 * s.PH, Wp = s.W + 2 * s.PW, HW = s.H * s.W;
  constexpr bool bytes = std::is_same<T, uint8_t>::value;
  std::vector<uint8_t> block(bytes ? 0 : size_t(Cg * HW));
  for (int64_t item = begin; item < end; ++item) {
    const int64_t g = item / s.N, n = item % s.N;
    uint8_t* dst = xs + (g * s.N + n) * Hp * Wp * Cg;
    const uint8_t* src;
    if constexpr (bytes) {
      src = x + (n * s.C + g * Cg) * HW;
    } else {
      quantise(x + (n * s.C + g * Cg) * HW, block.data(), Cg * HW);
      src = block.data();
    }
    // Only the padding needs the zero point; the rest is overwritten.
    std::memset(dst, zero_point, size_t(s.PH * Wp * Cg));
    std::memset(dst + (s.PH + s.H) * Wp * Cg, zero_point, size_t(s.PH * Wp * Cg));
    if (s.PW == 0 && Cg < 16 && HW >= 16) {
      // Unpadded rows follow each other in both layouts: one transpose of the whole plane, so that
      // few channels still fill 16-byte vectors (LeNet's 6-channel 14-pixel rows would not).
      transpose_narrow(src, HW, Cg, HW, dst + s.PH * Wp * Cg);
      continue;
    }
    for (int64_t yy = 0; yy < s.H; ++yy) {
      uint8_t* out = dst + (yy + s.PH) * Wp * Cg;
      std::memset(out, zero_point, size_t(s.PW * Cg));
      std::memset(out + (s.PW + s.W) * Cg, zero_point, size_t(s.PW * Cg));
      transpose_bytes(src + yy * s.W, HW, Cg, s.W, out + s.PW * Cg, Cg);
    }
  }
}

void ForwardU8::stage(const ConvShape& s, const uint8_t* x, uint8_t zero_point, uint8_t* xs,
                      int64_t begin, int64_t end) {
  stage_planes(s, x, zero_point, xs, begin, end, [](const uint8_t*, uint8_t*, int64_t) {});
}

bool ForwardU8::stage(const ConvShape& s, const float* x, float input_scale, uint8_t zero_point,
                      uint8_t* xs, int64_t begin, int64_t end) {
  const float zp = float(zero_point);
  bool finite = true;
  stage_planes(s, x, zero_point, xs, begin, end, [=, &finite](const float* in, uint8_t* out, int64_t w) {
    // The division (not a multiplication by 1/scale) and half-to-even rounding are torch's
    // fake-quantise arithmetic, so that both sides agree to the bit.
    // Rounding by adding and subtracting 1.5 * 2^23 is round-half-even for |t| < 2^22 and, unlike
    // nearbyint on baseline x86-64 (a libm call), vectorises; t is clamped to +-512 first, which
    // changes no result after the clamp to [0, 255]. A NaN or inf is flagged (x - x is NaN for
    // both, 0 for every finite x) and the bytes it leaves are never used.
    const float magic = 12582912.0f;
    int64_t i = 0;
#if defined(__SSE2__)
    // Written out, 16 at a time: the compiler kept the loop scalar (under -ftrapping-math its
    // compares may trap on NaN, so it kept the branches).
    const __m128 vs = _mm_set1_ps(input_scale), vm = _mm_set1_ps(magic), vz = _mm_set1_ps(zp),
                 lo = _mm_set1_ps(-512.0f), hi = _mm_set1_ps(512.0f), zero = _mm_setzero_ps(),
                 top = _mm_set1_ps(255.0f);
    __m128 bad = _mm_setzero_ps();
    auto q4 = [&](const float* p) {
      const __m128 v = _mm_loadu_ps(p), d = _mm_sub_ps(v, v);
      bad = _mm_or_ps(bad, _mm_cmpunord_ps(d, d));
      __m128 t = _mm_min_ps(_mm_max_ps(_mm_div_ps(v, vs), lo), hi);
      t = _mm_add_ps(_mm_sub_ps(_mm_add_ps(t, vm), vm), vz);
      return _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(t, zero), top));
    };
    for (; i + 16 <= w; i += 16) {
      const __m128i a = _mm_packs_epi32(q4(in + i), q4(in + i + 4)), b = _mm_packs_epi32(q4(in + i + 8), q4(in + i + 12));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm_packus_epi16(a, b));
    }
    if (_mm_movemask_ps(bad) != 0) finite = false;
#endif
    for (; i < w; ++i) {
      if (!std::isfinite(in[i])) finite = false;
      float t = in[i] / input_scale;
      t = t < -512.0f ? -512.0f : (t > 512.0f ? 512.0f : t);
      const float q = ((t + magic) - magic) + zp;
      out[i] = uint8_t(!(q >= 0.0f) ? 0.0f : (q > 255.0f ? 255.0f : q));
    }
  });
  return finite;
}

int64_t ForwardU8::pack_size(const ConvShape& s, const Options&) {
  return s.G * ((s.Og() + kU8MR - 1) / kU8MR * kU8MR) * u8_row_bytes(s);
}

// wp[g][o][t*run_pad + off] = W[g*Og + o][c][u][v]: run t = u, off = v*Cg + c (row runs), or
// t = u*KW + v, off = c (dilated); zero in each run's padding and past Og. Weights stored channels
// last (o, u, v, c) are the runs already: one copy per run. Otherwise each filter is transposed
// ([Cg][KH*KW] -> [KH*KW][Cg]), which for ResNet-18's 512-channel layer costs a tenth of the op.
void ForwardU8::pack(const ConvShape& s, const uint8_t* w, uint8_t* wp, const Options& opt, bool channels_last) {
  const int64_t Og = s.Og(), OgP = (Og + kU8MR - 1) / kU8MR * kU8MR, Cg = s.Cg(), Kq = u8_row_bytes(s),
                khw = s.KH * s.KW, len = u8_run_len(s), run_pad = u8_pad32(len), runs = u8_runs(s);
  std::memset(wp, 0, size_t(pack_size(s, opt)));
  for (int64_t g = 0; g < s.G; ++g)
    for (int64_t o = 0; o < Og; ++o) {
      const uint8_t* src = w + (g * Og + o) * Cg * khw;
      uint8_t* dst = wp + (g * OgP + o) * Kq;
      if (channels_last || khw == 1) {
        for (int64_t t = 0; t < runs; ++t) std::memcpy(dst + t * run_pad, src + t * len, size_t(len));
        continue;
      }
      // Tap-major: each tap's Cg bytes are read khw apart (within one filter, in L1) and written
      // contiguously.
      const bool rows = u8_row_runs(s);
      for (int64_t u = 0; u < s.KH; ++u)
        for (int64_t v = 0; v < s.KW; ++v) {
          uint8_t* d = dst + (rows ? u * run_pad + v * Cg : (u * s.KW + v) * run_pad);
          const uint8_t* sp = src + u * s.KW + v;
          for (int64_t c = 0; c < Cg; ++c) d[c] = sp[c * khw];
        }
    }
}

U8Segments::U8Segments(const ConvShape& s) {
  const int64_t Cg = s.Cg(), Wp = s.W + 2 * s.PW, len = u8_run_len(s), run_pad = u8_pad32(len);
  const bool rows = u8_row_runs(s);
  int64_t used = 0;  // padded bytes in the block being filled
  for (int64_t t = 0; t < u8_runs(s); ++t) {
    const int64_t x = rows ? t * s.DH * Wp * Cg : ((t / s.KW) * s.DH * Wp + (t % s.KW) * s.DW) * Cg;
    for (int64_t off = 0; off < len; off += kU8KC) {
      const int64_t piece = len - off < kU8KC ? len - off : kU8KC;
      if (block.empty() || used + u8_pad32(piece) > kU8KC) {
        block.push_back(int64_t(seg.size()));
        used = 0;
      }
      seg.push_back(U8Seg{x + off, t * run_pad + off, piece});
      used += u8_pad32(piece);
    }
  }
  blocks = int64_t(block.size());
  block.push_back(int64_t(seg.size()));
}

const char* u8_vec_name(U8Vec v) {
  switch (v) {
    case U8Vec::ymm: return "ymm";
    case U8Vec::zmm: return "zmm";
    default: return "automatic";
  }
}

U8Vec u8_vec_default() {
#if defined(__x86_64__) || defined(_M_X64)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u &&  // "AuthenticAMD"
      __get_cpuid(1, &a, &b, &c, &d)) {
    const unsigned family = ((a >> 8) & 0xf) + ((a >> 20) & 0xff);
    if (family == 0x19) return U8Vec::ymm;
  }
#endif
  return U8Vec::zmm;
}

bool u8_vec_from_env(U8Vec* out, const char** error) {
  const char* env = std::getenv("ADDERNET_U8_VECTOR");
  if (env == nullptr || *env == '\0') {
    *out = U8Vec::automatic;
    return true;
  }
  for (U8Vec v : {U8Vec::ymm, U8Vec::zmm})
    if (std::strcmp(env, u8_vec_name(v)) == 0) {
      *out = v;
      return true;
    }
  *error = "ADDERNET_U8_VECTOR must be ymm or zmm";
  return false;
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
                    void* y, int64_t begin, int64_t end, const Options& opt, U8Vec vec) {
  switch (opt.isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::avx512: {
      // Worked out once: cpuid is slow.
      static const U8Vec preferred = u8_vec_default();
      const bool wide = (vec == U8Vec::automatic ? preferred : vec) == U8Vec::zmm;
      return u8_avx512::run(s, xs, wp, ep, y, begin, end, opt.threads, wide);
    }
    case Isa::avx2: return u8_avx2::run(s, xs, wp, ep, y, begin, end, opt.threads, false);
#endif
    default: return u8_portable::run(s, xs, wp, ep, y, begin, end, opt.threads, false);
  }
}

}  // namespace cpu
}  // namespace addernet
