// Shapes and float64 references for the emulated CUDA kernel test (test_emu_kernels.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../kernels/cuda/adder_conv2d_cuda.cuh"
#include "../odd_shapes.h"

namespace emu_test {

using addernet::cuda::AdderConvSizes;

struct Case {
  std::string name;
  AdderConvSizes s;
};

inline AdderConvSizes from_shape(const addernet::cpu::ConvShape& c) {
  return AdderConvSizes{c.N, c.C, c.H, c.W, c.O, c.KH, c.KW, c.SH, c.SW, c.PH, c.PW, c.DH, c.DW,
                        c.G, c.OH, c.OW};
}

inline std::string describe(const AdderConvSizes& s) {
  char b[200];
  std::snprintf(b, sizeof b, "N%ld C%ld %ldx%ld O%ld k%ldx%ld s%ld,%ld p%ld,%ld d%ld,%ld g%ld",
                long(s.N), long(s.C), long(s.H), long(s.W), long(s.O), long(s.KH), long(s.KW),
                long(s.sh), long(s.sw), long(s.ph), long(s.pw), long(s.dh), long(s.dw),
                long(s.groups));
  return b;
}

// The tile shapes of adder_conv2d_cuda.cu: rows (output channels per group for the forward
// and weight gradient, input channels per group for the input gradient) pick the config.
// Forward: direct <= 4 < tiny 16 < small 32 < mid 64 < large; input gradient: 16, 32, 64;
// weight gradient: 16, 32, then 64-row tiles; columns: 256 and 128 positions, 64 and 128 taps.
inline std::vector<Case> tile_boundary_cases() {
  using addernet::cpu::test::make;
  std::vector<Case> c;
  for (int64_t rows : {4, 16, 32, 64, 128}) {
    c.push_back({"tile_rows" + std::to_string(rows + 1),
                 from_shape(make(1, rows + 1, 4, 5, rows + 1, 3, 3, 1, 1, 1, 1))});
  }
  // Positions just past 256 and 128 columns; taps just past 64 and 128 (weight gradient).
  c.push_back({"tile_pos257", from_shape(make(1, 17, 1, 257, 17, 1, 1, 1, 0, 1, 1))});
  c.push_back({"tile_taps65", from_shape(make(2, 65, 3, 3, 20, 1, 1, 1, 0, 1, 1))});
  c.push_back({"tile_taps129", from_shape(make(2, 129, 3, 3, 40, 1, 1, 1, 0, 1, 1))});
  // Two groups whose rows each spill one past a tile.
  c.push_back({"tile_g2_rows17", from_shape(make(1, 34, 4, 4, 34, 3, 3, 1, 1, 1, 2))});
  c.push_back({"tile_g3_rows33", from_shape(make(1, 99, 3, 3, 99, 1, 1, 1, 0, 1, 3))});
  return c;
}

inline std::vector<Case> all_cases() {
  using addernet::cpu::test::make;
  std::vector<Case> cases;
  int i = 0;
  for (const auto& c : addernet::cpu::test::odd_shapes()) {
    cases.push_back({"odd" + std::to_string(i++), from_shape(c)});
  }
  // The shapes only the float CPU test appends: no input channels, and a huge stride.
  cases.push_back({"cpu_C0", from_shape(make(2, 0, 6, 6, 4, 3, 3, 1, 1, 1, 1))});
  for (auto& c : tile_boundary_cases()) cases.push_back(c);
  // Padding past the kernel extent, stride 3, depthwise, 1x1 images, one output position.
  cases.push_back({"x_direct_s2d2g2", from_shape(make(2, 4, 9, 11, 8, 3, 3, 2, 2, 2, 2))});
  cases.push_back({"x_g3_k2", from_shape(make(1, 6, 8, 8, 18, 2, 2, 2, 0, 1, 3))});
  cases.push_back({"x_depthwise16", from_shape(make(2, 16, 6, 6, 16, 3, 3, 1, 1, 1, 16))});
  cases.push_back({"x_1x1img", from_shape(make(1, 2, 1, 1, 3, 1, 1, 1, 0, 1, 1))});
  cases.push_back({"x_onepos_O20", from_shape(make(1, 3, 3, 3, 20, 3, 3, 1, 0, 1, 1))});
  cases.push_back({"x_s3_k5", from_shape(make(2, 8, 7, 7, 24, 5, 5, 3, 2, 1, 1))});
  cases.push_back({"x_pad3_k3", from_shape(make(1, 4, 10, 3, 6, 3, 3, 1, 3, 1, 1))});
  return cases;
}

// A few shapes reaching every kernel config, for the quick runs (mutants, ucontext build).
inline std::vector<Case> quick_cases() {
  std::vector<Case> all = all_cases(), q;
  for (const char* name : {"odd0", "odd1", "odd3", "odd9", "odd13", "tile_rows17", "tile_rows33",
                           "tile_rows65", "tile_taps65", "x_s3_k5"}) {
    for (const Case& c : all) {
      if (c.name == name) q.push_back(c);
    }
  }
  return q;
}

// Visits every (output, tap) pair: input index (-1 for padding), weight index, output index.
template <typename F>
void for_each_tap(const AdderConvSizes& s, F&& f) {
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.O; ++o)
      for (int64_t i = 0; i < s.OH; ++i)
        for (int64_t j = 0; j < s.OW; ++j)
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t u = 0; u < s.KH; ++u)
              for (int64_t v = 0; v < s.KW; ++v) {
                const int64_t y = i * s.sh - s.ph + u * s.dh, x = j * s.sw - s.pw + v * s.dw;
                const bool valid = y >= 0 && y < s.H && x >= 0 && x < s.W;
                const int64_t ci = (o / Og) * Cg + c;
                f(valid ? ((n * s.C + ci) * s.H + y) * s.W + x : -1,
                  ((o * Cg + c) * s.KH + u) * s.KW + v, ((n * s.O + o) * s.OH + i) * s.OW + j);
              }
}

// The tap-sum functions (csrc/kernels/cpu/tapsum.h): hardtanh, sign, |d| < 1 mask.
inline double phi(double d, int fn) {
  if (fn == 0) return d < -1 ? -1 : (d > 1 ? 1 : d);
  if (fn == 1) return d > 0 ? 1 : (d < 0 ? -1 : d);
  return std::fabs(d) < 1 ? 1 : 0;
}

// Reference values and, per element, the sum of |terms| that bounds float accumulation error.
struct Ref {
  std::vector<double> v, scale;
  explicit Ref(size_t n = 0) : v(n), scale(n) {}
  void add(size_t i, double term) {
    v[i] += term;
    scale[i] += std::fabs(term);
  }
};

}  // namespace emu_test
