// Native unit test of the raw CPU kernels against naive double loops, for every ISA this CPU runs,
// over shapes that hit every tile edge. Prints "N passed, M failed" and exits non-zero on failure.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "../kernels/cpu/adder_conv2d_cpu.h"
#include "../kernels/cpu/bf16.h"
#include "odd_shapes.h"

using namespace addernet::cpu;
using addernet::cpu::test::make;

static double px(const ConvShape& s, const std::vector<double>& x, int64_t n, int64_t c, int64_t y,
                 int64_t xx) {
  if (y < 0 || y >= s.H || xx < 0 || xx >= s.W) return 0.0;
  return x[((n * s.C + c) * s.H + y) * s.W + xx];
}

static void naive(const ConvShape& s, const std::vector<double>& x, const std::vector<double>& w,
                  const std::vector<double>& g, std::vector<double>& y, std::vector<double>& gx) {
  const int64_t Cg = s.Cg(), Og = s.Og();
  y.assign(s.N * s.O * s.L(), 0.0);
  gx.assign(s.N * s.C * s.H * s.W, 0.0);
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t i = 0; i < s.OH; ++i)
        for (int64_t j = 0; j < s.OW; ++j) {
          const int64_t grp = o / Og;
          const double go = g[((n * s.O + o) * s.OH + i) * s.OW + j];
          double acc = 0;
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t u = 0; u < s.KH; ++u)
              for (int64_t v = 0; v < s.KW; ++v) {
                const int64_t yy = i * s.SH - s.PH + u * s.DH, xx = j * s.SW - s.PW + v * s.DW;
                const double xv = px(s, x, n, grp * Cg + c, yy, xx);
                const double wv = w[((o * Cg + c) * s.KH + u) * s.KW + v];
                acc += std::fabs(xv - wv);
                if (yy >= 0 && yy < s.H && xx >= 0 && xx < s.W)
                  gx[((n * s.C + grp * Cg + c) * s.H + yy) * s.W + xx] +=
                      go * std::fmin(1.0, std::fmax(-1.0, wv - xv));
              }
          y[((n * s.O + o) * s.OH + i) * s.OW + j] = -acc;
        }
}

template <typename T> static T from_double(double v) { return T(v); }
template <> bf16 from_double<bf16>(double v) { return to_bf16(float(v)); }

template <typename T>
static bool check(const ConvShape& s, const Options& opt, std::mt19937& rng, double tol) {
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<T> x(s.N * s.C * s.H * s.W), w(s.O * s.K()), g(s.N * s.O * s.L());
  std::vector<double> xd(x.size()), wd(w.size()), gd(g.size()), y_ref, gx_ref;
  for (size_t i = 0; i < x.size(); ++i) { x[i] = from_double<T>(dist(rng)); xd[i] = widen(x[i]); }
  for (size_t i = 0; i < w.size(); ++i) { w[i] = from_double<T>(dist(rng)); wd[i] = widen(w[i]); }
  for (size_t i = 0; i < g.size(); ++i) { g[i] = from_double<T>(dist(rng)); gd[i] = widen(g[i]); }
  naive(s, xd, wd, gd, y_ref, gx_ref);

  std::vector<T> y(y_ref.size(), from_double<T>(NAN)), gx(gx_ref.size(), from_double<T>(NAN));
  std::vector<double> wp(Forward<T>::pack_size(s, opt));
  Forward<T>::pack(s, w.data(), wp.data(), opt);
  Forward<T>::run(s, x.data(), wp.data(), nullptr, nullptr, false, y.data(), 0,
                  Forward<T>::work_items(s, opt), opt);
  std::vector<double> wt(InputGrad<T>::pack_size(s, opt));
  InputGrad<T>::pack(s, w.data(), wt.data(), opt);
  InputGrad<T>::run(s, x.data(), wt.data(), g.data(), gx.data(), 0, InputGrad<T>::work_items(s, opt),
                    opt);

  double err_y = 0, err_gx = 0, scale_y = 1, scale_gx = 1;
  for (size_t i = 0; i < y.size(); ++i) {
    err_y = std::fmax(err_y, std::fabs(widen(y[i]) - y_ref[i]));
    if (std::isnan(widen(y[i]))) err_y = INFINITY;
    scale_y = std::fmax(scale_y, std::fabs(y_ref[i]));
  }
  for (size_t i = 0; i < gx.size(); ++i) {
    err_gx = std::fmax(err_gx, std::fabs(widen(gx[i]) - gx_ref[i]));
    if (std::isnan(widen(gx[i]))) err_gx = INFINITY;
    scale_gx = std::fmax(scale_gx, std::fabs(gx_ref[i]));
  }
  const bool ok = err_y <= tol * scale_y && err_gx <= tol * scale_gx;
  if (!ok)
    std::printf("FAIL %s %s tap=%s threads=%ld N%ld C%ld %ldx%ld O%ld k%ldx%ld s%ld,%ld p%ld d%ld g%ld: y err %.3g, gx err %.3g\n",
                isa_name(opt.isa), algo_name(opt.algo), tap_name(opt.tap), long(opt.threads), long(s.N), long(s.C), long(s.H), long(s.W), long(s.O), long(s.KH),
                long(s.KW), long(s.SH), long(s.SW), long(s.PH), long(s.DH), long(s.G), err_y / scale_y,
                err_gx / scale_gx);
  return ok;
}

int main() {
  std::mt19937 rng(1234);
  std::vector<ConvShape> shapes = test::odd_shapes();
  shapes.insert(shapes.end(), {
      // no input channels (an empty sum), and a stride far past the input (cost must not grow)
      make(2, 0, 6, 6, 4, 3, 3, 1, 1, 1, 1),    make(1, 2, 9, 9, 3, 3, 3, int64_t(1) << 40, 1, 1, 1),
  });
  int passed = 0, failed = 0;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (!isa_supported(isa)) {
      std::printf("skip %s: not supported here\n", isa_name(isa));
      continue;
    }
    // Small batches split output (and input) channels across work items at 64 threads, where
    // tiles are too few, and at 3, where a few tiles would be dealt unevenly.
    // Every forward tap (the float64 forward runs the exact one either way).
    for (Algo algo : {Algo::packed, Algo::direct})
      for (int64_t threads : {1, 3, 64})
        for (Tap tap : {Tap::identity256, Tap::identity512, Tap::exact})
          for (const ConvShape& s : shapes) {
            const Options opt{isa, algo, threads, tap};
            (check<float>(s, opt, rng, 1e-5) ? passed : failed)++;
            (check<double>(s, opt, rng, 1e-12) ? passed : failed)++;
            (check<bf16>(s, opt, rng, 2e-2) ? passed : failed)++;
          }
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
