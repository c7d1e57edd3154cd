// The floor of the float32 forward micro-kernel on this CPU, in L1: G taps/s of one register tile
// for three tap formulas, in AVX2 (ymm) and AVX-512 (zmm) builds of the same code.
//   fma:  acc += x * w                       (a convolution tap, F.conv2d's floor)
//   abs:  acc += |x - w| (sub, and, fma by 1) (the adder kernels' tap today)
//   min:  acc += min(x, w)                    (the identity |x - w| = x + w - 2 min(x, w): the x
//                                              and w sums are per position and per filter, so a
//                                              tap costs a min and an add)
//   min+fma: the same, accumulated by an FMA by 1 (on the FMA pipes, not the adder ones)
// Build: g++ -O3 -march=native -o micro_floor micro_floor.cpp ; run: ./micro_floor
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <ctime>

template <typename V> struct Ops;
#pragma GCC diagnostic ignored "-Wignored-attributes"
template <> struct Ops<__m256> {
  static constexpr int W = 8;
  static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
  static __m256 set1(float v) { return _mm256_set1_ps(v); }
  static __m256 zero() { return _mm256_setzero_ps(); }
  static __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
  static __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
  static __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
  static __m256 andv(__m256 a, __m256 b) { return _mm256_and_ps(a, b); }
  static __m256 min(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
  static float sum(__m256 a) { float t[8]; _mm256_storeu_ps(t, a); float s = 0; for (float v : t) s += v; return s; }
};
template <> struct Ops<__m512> {
  static constexpr int W = 16;
  static __m512 load(const float* p) { return _mm512_loadu_ps(p); }
  static __m512 set1(float v) { return _mm512_set1_ps(v); }
  static __m512 zero() { return _mm512_setzero_ps(); }
  static __m512 fma(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
  static __m512 sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
  static __m512 add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
  static __m512 andv(__m512 a, __m512 b) { return _mm512_and_ps(a, b); }
  static __m512 min(__m512 a, __m512 b) { return _mm512_min_ps(a, b); }
  static float sum(__m512 a) { return _mm512_reduce_add_ps(a); }
};

enum Kind { FMA, ABS, MIN, MINFMA };

// MR broadcast weights x NV vectors of positions, K taps, panel xp[K][NV*W] and wp[K][MR].
template <typename V, int MR, int NV, Kind kind>
__attribute__((noinline)) float tile(int K, const float* xp, const float* wp) {
  using O = Ops<V>;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[m][v] = O::zero();
  V mask = O::set1(0);
  {
    const int bits = 0x7fffffff;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    mask = O::set1(f);
  }
  V one = O::set1(1.0f);
  asm("" : "+x"(one));
  for (int k = 0; k < K; ++k) {
    V x[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) x[v] = O::load(xp + (k * NV + v) * O::W);
#pragma GCC unroll 32
    for (int m = 0; m < MR; ++m) {
      const V w = O::set1(wp[k * MR + m]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        if (kind == FMA) acc[m][v] = O::fma(x[v], w, acc[m][v]);
        if (kind == ABS) acc[m][v] = O::fma(O::andv(O::sub(x[v], w), mask), one, acc[m][v]);
        if (kind == MIN) acc[m][v] = O::add(O::min(x[v], w), acc[m][v]);
        if (kind == MINFMA) acc[m][v] = O::fma(O::min(x[v], w), one, acc[m][v]);
      }
    }
  }
  float s = 0;
  for (int m = 0; m < MR; ++m)
    for (int v = 0; v < NV; ++v) s += O::sum(acc[m][v]);
  return s;
}

template <typename V, int MR, int NV, Kind kind> double gtaps(const char* name) {
  constexpr int W = Ops<V>::W, K = 256;
  static float xp[K * NV * W], wp[K * MR];
  for (int i = 0; i < K * NV * W; ++i) xp[i] = float(i % 7) * 0.25f;
  for (int i = 0; i < K * MR; ++i) wp[i] = float(i % 5) * 0.5f;
  const int reps = 20000;
  volatile float sink = 0;
  const std::clock_t t0 = std::clock();
  for (int r = 0; r < reps; ++r) sink = sink + tile<V, MR, NV, kind>(K, xp, wp);
  const double s = double(std::clock() - t0) / CLOCKS_PER_SEC;
  const double g = double(reps) * K * MR * NV * W / s / 1e9;
  std::printf("%-34s %6.1f G taps/s\n", name, g);
  return g;
}

int main() {
  std::printf("one thread, CPU time, tile in L1 (K = 256)\n");
  gtaps<__m256, 6, 2, FMA>("ymm 6x2 fma (conv)");
  gtaps<__m256, 5, 2, ABS>("ymm 5x2 |x-w| sub+and+fma");
  gtaps<__m256, 6, 2, MIN>("ymm 6x2 min+add");
  gtaps<__m256, 6, 2, MINFMA>("ymm 6x2 min+fma");
  gtaps<__m256, 5, 2, MINFMA>("ymm 5x2 min+fma");
#ifdef __AVX512VL__
  // ymm with AVX-512VL's 32 registers: the identity tap of the AVX-512 build
  gtaps<__m256, 12, 2, MINFMA>("ymm 12x2 min+fma (32 regs)");
  gtaps<__m256, 6, 4, MINFMA>("ymm 6x4 min+fma (32 regs)");
  gtaps<__m256, 8, 2, MINFMA>("ymm 8x2 min+fma (32 regs)");
#endif
  gtaps<__m512, 12, 2, FMA>("zmm 12x2 fma (conv)");
  gtaps<__m512, 12, 2, ABS>("zmm 12x2 |x-w| sub+and+fma");
  gtaps<__m512, 8, 2, ABS>("zmm 8x2 |x-w| sub+and+fma");
  gtaps<__m512, 12, 2, MIN>("zmm 12x2 min+add");
  gtaps<__m512, 12, 2, MINFMA>("zmm 12x2 min+fma");
  return 0;
}
