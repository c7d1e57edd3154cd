// Native unit test of the uint8 adder forward against a naive integer loop, for every ISA this
// CPU runs, over shapes that hit every tile edge; and the overflow worst case, all 255 against
// all 0 at the largest reduction length the op accepts. Prints "N passed, M failed".
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../kernels/cpu/adder_conv2d_u8.h"
#include "odd_shapes.h"

using namespace addernet::cpu;
using addernet::cpu::test::make;

// -sum |qx - qw| with padded taps holding the zero point, in 64-bit integers.
static std::vector<int64_t> naive(const ConvShape& s, const std::vector<uint8_t>& x,
                                  const std::vector<uint8_t>& w, int zp) {
  std::vector<int64_t> y(s.N * s.O * s.L());
  const int64_t Cg = s.Cg(), Og = s.Og();
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t i = 0; i < s.OH; ++i)
        for (int64_t j = 0; j < s.OW; ++j) {
          int64_t acc = 0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t u = 0; u < s.KH; ++u)
              for (int64_t v = 0; v < s.KW; ++v) {
                const int64_t yy = i * s.SH - s.PH + u * s.DH, xx = j * s.SW - s.PW + v * s.DW;
                const bool in = yy >= 0 && yy < s.H && xx >= 0 && xx < s.W;
                const int64_t xv = in ? x[((n * s.C + o / Og * Cg + c) * s.H + yy) * s.W + xx] : zp;
                acc += std::llabs(xv - int64_t(w[((o * Cg + c) * s.KH + u) * s.KW + v]));
              }
          y[((n * s.O + o) * s.OH + i) * s.OW + j] = -acc;
        }
  return y;
}

// The AVX-512 build's vector width (both are run where it runs).
static U8Vec g_vec = U8Vec::automatic;

template <typename Y>
static std::vector<Y> forward(const ConvShape& s, const std::vector<uint8_t>& x, const std::vector<uint8_t>& w,
                              int zp, const U8Epilogue& ep, const Options& opt, bool channels_last = false) {
  std::vector<uint8_t> xs(ForwardU8::stage_size(s)), wp(ForwardU8::pack_size(s, opt));
  ForwardU8::stage(s, x.data(), uint8_t(zp), xs.data(), 0, ForwardU8::stage_items(s));
  if (channels_last) {
    // The same weights stored (O, KH, KW, Cg).
    std::vector<uint8_t> wcl(w.size());
    const int64_t Cg = s.Cg(), khw = s.KH * s.KW;
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < khw; ++t) wcl[(o * khw + t) * Cg + c] = w[(o * Cg + c) * khw + t];
    ForwardU8::pack(s, wcl.data(), wp.data(), opt, true);
  } else {
    ForwardU8::pack(s, w.data(), wp.data(), opt);
  }
  std::vector<Y> y(s.N * s.O * s.L(), Y(77));
  // Work items in two ranges, as two threads would run them.
  const int64_t items = ForwardU8::work_items(s, opt);
  ForwardU8::run(s, xs.data(), wp.data(), ep, y.data(), 0, items / 2, opt, g_vec);
  ForwardU8::run(s, xs.data(), wp.data(), ep, y.data(), items / 2, items, opt, g_vec);
  return y;
}

static bool check(const ConvShape& s, const Options& opt, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> x(s.N * s.C * s.H * s.W), w(s.O * s.K());
  for (auto& v : x) v = uint8_t(byte(rng));
  for (auto& v : w) v = uint8_t(byte(rng));
  const int zp = byte(rng);
  const std::vector<int64_t> ref = naive(s, x, w, zp);
  std::vector<float> scale(s.O), shift(s.O);
  for (int64_t o = 0; o < s.O; ++o) { scale[o] = 0.001f * float(1 + o % 7); shift[o] = 3.0f - 0.5f * float(o % 5); }
  U8Epilogue raw;
  U8Epilogue f32{U8Out::f32, scale.data(), shift.data(), true, 1.0f, 0};
  U8Epilogue u8{U8Out::u8, scale.data(), shift.data(), false, 0.02f, 100};
  const auto yr = forward<int32_t>(s, x, w, zp, raw, opt);
  if (forward<int32_t>(s, x, w, zp, raw, opt, true) != yr) {
    std::printf("FAIL %s/%s: channels-last weights give another result (O=%lld Cg=%lld K=%lldx%lld)\n",
                isa_name(opt.isa), u8_vec_name(g_vec), (long long)s.O, (long long)s.Cg(), (long long)s.KH,
                (long long)s.KW);
    return false;
  }
  const auto yf = forward<float>(s, x, w, zp, f32, opt);
  const auto yq = forward<uint8_t>(s, x, w, zp, u8, opt);
  for (size_t i = 0; i < ref.size(); ++i) {
    const int64_t o = int64_t(i / s.L()) % s.O;
    const double v = double(ref[i]) * scale[o] + shift[o];
    const double q = std::fmin(255.0, std::fmax(0.0, std::nearbyint(v / 0.02) + 100));
    // float32 epilogue: a few units in the last place of the larger term.
    const double tol = 4e-7 * (std::fabs(double(ref[i]) * scale[o]) + std::fabs(shift[o]));
    if (yr[i] != ref[i] || std::fabs(yf[i] - std::fmax(v, 0.0)) > tol || std::fabs(double(yq[i]) - q) > 1) {
      std::printf("FAIL %s/%s N=%lld C=%lld H=%lld W=%lld O=%lld K=%lldx%lld S=%lld P=%lld D=%lld G=%lld "
                  "threads=%lld at %zu: raw %d want %lld, f32 %g want %g, u8 %d want %g\n",
                  isa_name(opt.isa), u8_vec_name(g_vec), (long long)s.N, (long long)s.C, (long long)s.H, (long long)s.W,
                  (long long)s.O, (long long)s.KH, (long long)s.KW, (long long)s.SH, (long long)s.PH,
                  (long long)s.DH, (long long)s.G, (long long)opt.threads, i, yr[i], (long long)ref[i],
                  yf[i], std::fmax(v, 0.0), yq[i], q);
      return false;
    }
  }
  return true;
}

// All 255 against all 0: each vpsadbw lane gives 8*255, and the total 255*K must come out whole.
static bool worst_case(int64_t C, int64_t KH, const Options& opt, bool input_max) {
  const ConvShape s = make(1, C, KH, KH, 5, KH, KH, 1, 0, 1, 1);
  std::vector<uint8_t> x(s.C * s.H * s.W, input_max ? 255 : 0), w(s.O * s.K(), input_max ? 0 : 255);
  const auto y = forward<int32_t>(s, x, w, 0, U8Epilogue{}, opt);
  for (int32_t v : y)
    if (int64_t(v) != -255 * s.K()) {
      std::printf("FAIL overflow %s/%s K=%lld: %d want %lld\n", isa_name(opt.isa), u8_vec_name(g_vec),
                  (long long)s.K(), v,
                  (long long)(-255 * s.K()));
      return false;
    }
  return true;
}

int main() {
  std::mt19937 rng(1234);
  std::vector<ConvShape> shapes = test::odd_shapes();
  shapes.insert(shapes.end(), {
      // k blocks: 300 channels x 9 taps = 2700 bytes, more than one 2048-byte block
      make(2, 300, 5, 5, 9, 3, 3, 1, 1, 1, 1),  make(1, 12, 9, 9, 8, 3, 3, 2, 3, 3, 2),
      // staging's 16x16 transposed blocks and their edges (35 channels, 21 columns); 1x1 stride 2
      make(2, 35, 9, 21, 8, 3, 3, 1, 1, 1, 1),  make(2, 32, 18, 17, 10, 1, 1, 2, 0, 1, 1),
      // a run longer than one k block (3000 bytes), cut in two pieces
      make(1, 3000, 2, 2, 5, 1, 1, 1, 0, 1, 1),
  });
  int passed = 0, failed = 0;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) {
      std::printf("skip %s: not supported here\n", isa_name(isa));
      continue;
    }
    for (U8Vec vec : {U8Vec::ymm, U8Vec::zmm}) {
      if (vec == U8Vec::zmm && isa != Isa::avx512) continue;  // one width outside the AVX-512 build
      g_vec = vec;
      for (int64_t threads : {1, 3, 64})
        for (const ConvShape& s : shapes) (check(s, Options{isa, Algo::automatic, threads}, rng) ? passed : failed)++;
      const Options opt{isa, Algo::automatic, 1};
      // ResNet-18's largest patch (512 x 3x3), and the longest reduction the binding accepts.
      for (bool input_max : {true, false}) {
        (worst_case(512, 3, opt, input_max) ? passed : failed)++;
        (worst_case(kU8MaxK, 1, opt, input_max) ? passed : failed)++;
      }
    }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
