// The floor of the 8-bit inner loops on this CPU, in L1: G taps/s of one thread for one register tile
// (or AMX tile set), CPU time of the thread. A tap is one |x - w| (adder) or one x * w (convolution).
//   sad512:  acc += vpsadbw(x, w) (zmm, 64 taps) + vpaddq           (the uint8 adder kernel's loop)
//   sad256:  the same on ymm (32 taps), 32 registers (AVX-512VL) and 16 (AVX2's tile)
//   dpbusd512: acc = vpdpbusd(acc, x broadcast, w) (zmm, 64 u8*s8 products, in place: oneDNN's VNNI)
//   avx2conv: vpmaddubsw + vpmaddwd(by 1) + vpaddd (32 products in three instructions: an AVX2-only
//             CPU's int8 convolution)
//   amx:     tdpbusd on 16x64 by 64x16 tiles (16384 products an instruction: oneDNN's AMX path)
// Build: g++ -O3 -march=native -o micro_floor_u8 micro_floor_u8.cpp ; run: ./micro_floor_u8
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>

static double thread_s() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

alignas(64) static uint8_t X[16][1024];
alignas(64) static uint8_t Wt[16][1024];
static volatile int64_t sink;
constexpr int K = 576;  // 64 channels x 3x3: ResNet's patch, in bytes
constexpr int REPS = 200000;

// Each kernel runs REPS passes over K bytes of NR patches and MR filters; returns taps done.
template <int MR, int NR>
static double sad512() {
  __m512i acc[MR * NR];
  for (auto& a : acc) a = _mm512_setzero_si512();
  for (int rep = 0; rep < REPS; ++rep)
    for (int k = 0; k < K; k += 64) {
      __m512i w[MR];
      for (int m = 0; m < MR; ++m) w[m] = _mm512_load_si512(Wt[m] + k);
      for (int r = 0; r < NR; ++r) {
        const __m512i x = _mm512_load_si512(X[r] + k);
        for (int m = 0; m < MR; ++m) acc[m * NR + r] = _mm512_add_epi64(acc[m * NR + r], _mm512_sad_epu8(x, w[m]));
      }
    }
  int64_t s = 0;
  for (auto& a : acc) s += _mm512_reduce_add_epi64(a);
  sink = s;
  return double(REPS) * K * MR * NR;
}

template <int MR, int NR>
static double sad256() {
  __m256i acc[MR * NR];
  for (auto& a : acc) a = _mm256_setzero_si256();
  for (int rep = 0; rep < REPS; ++rep)
    for (int k = 0; k < K; k += 32) {
      __m256i x[NR];
      for (int r = 0; r < NR; ++r) x[r] = _mm256_load_si256(reinterpret_cast<const __m256i*>(X[r] + k));
      for (int m = 0; m < MR; ++m) {
        const __m256i w = _mm256_load_si256(reinterpret_cast<const __m256i*>(Wt[m] + k));
        for (int r = 0; r < NR; ++r) acc[m * NR + r] = _mm256_add_epi64(acc[m * NR + r], _mm256_sad_epu8(x[r], w));
      }
    }
  int64_t s = 0;
  for (auto& a : acc) {
    alignas(32) int64_t t[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), a);
    s += t[0] + t[1] + t[2] + t[3];
  }
  sink = s;
  return double(REPS) * K * MR * NR;
}

// MR vectors of 16 output channels, NR positions: per 4 taps, MR weight loads, NR broadcasts.
template <int MR, int NR>
static double dpbusd512() {
  __m512i acc[MR * NR];
  for (auto& a : acc) a = _mm512_setzero_si512();
  for (int rep = 0; rep < REPS; ++rep)
    for (int k = 0; k < K; k += 4) {
      __m512i w[MR];
      for (int m = 0; m < MR; ++m) w[m] = _mm512_load_si512(Wt[m] + (k * 16) % 1024);
      for (int r = 0; r < NR; ++r) {
        int32_t xv;
        std::memcpy(&xv, X[r] + k, 4);
        const __m512i x = _mm512_set1_epi32(xv);
        for (int m = 0; m < MR; ++m) acc[m * NR + r] = _mm512_dpbusd_epi32(acc[m * NR + r], x, w[m]);
      }
    }
  int64_t s = 0;
  for (auto& a : acc) s += _mm512_reduce_add_epi32(a);
  sink = s;
  return double(REPS) * K * 16 * MR * NR;
}

template <int MR, int NR>
static double avx2conv() {
  __m256i acc[MR * NR];
  for (auto& a : acc) a = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int rep = 0; rep < REPS; ++rep)
    for (int k = 0; k < K; k += 4) {
      __m256i w[MR];
      for (int m = 0; m < MR; ++m) w[m] = _mm256_load_si256(reinterpret_cast<const __m256i*>(Wt[m] + (k * 8) % 1024));
      for (int r = 0; r < NR; ++r) {
        int32_t xv;
        std::memcpy(&xv, X[r] + k, 4);
        const __m256i x = _mm256_set1_epi32(xv);
        for (int m = 0; m < MR; ++m)
          acc[m * NR + r] = _mm256_add_epi32(acc[m * NR + r], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w[m]), ones));
      }
    }
  int64_t s = 0;
  for (auto& a : acc) {
    alignas(32) int32_t t[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(t), a);
    for (int v : t) s += v;
  }
  sink = s;
  return double(REPS) * K * 8 * MR * NR;
}

#if defined(__AMX_INT8__)
struct TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// C: 2x2 tiles of 16x16 int32 (tmm0-3); A: two 16x64-byte tiles (tmm4-5); B: two (tmm6-7).
static double amx() {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int steps = K / 64;
  for (int rep = 0; rep < REPS; ++rep)
    for (int s = 0; s < steps; ++s) {
      _tile_loadd(4, X[0] + 64 * (s % 2), 128);
      _tile_loadd(5, X[8] + 64 * (s % 2), 128);
      _tile_loadd(6, Wt[0] + 64 * (s % 2), 128);
      _tile_loadd(7, Wt[8] + 64 * (s % 2), 128);
      _tile_dpbusd(0, 4, 6);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  alignas(64) int32_t c[16 * 16];
  _tile_stored(0, c, 64);
  _tile_release();
  sink = c[0];
  return double(REPS) * steps * 4 * 16 * 16 * 64;
}

static bool amx_permitted() {
  // Linux hands out AMX tile state on request only (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
  return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}
#endif

template <typename F>
static void report(const char* name, F f, int runs = 3) {
  double best = 0;
  for (int i = 0; i < runs; ++i) {
    const double t0 = thread_s();
    const double taps = f();
    const double g = taps / (thread_s() - t0) / 1e9;
    best = g > best ? g : best;
  }
  std::printf("%-34s %8.1f G taps/s\n", name, best);
}

int main() {
  for (int i = 0; i < 16; ++i)
    for (int k = 0; k < 1024; ++k) {
      X[i][k] = uint8_t(i * 31 + k * 7);
      Wt[i][k] = uint8_t(i * 17 + k * 13);
    }
  report("sad512 4x6 (zmm, the kernel's)", sad512<4, 6>);
  report("sad256 4x6 (ymm, 32 registers)", sad256<4, 6>);
  report("sad256 4x2 (ymm, AVX2's tile)", sad256<4, 2>);
  report("dpbusd512 4x6 (VNNI, zmm)", dpbusd512<4, 6>);
  report("avx2conv 2x4 (maddubs+madd+add)", avx2conv<2, 4>);
#if defined(__AMX_INT8__)
  if (amx_permitted())
    report("amx tdpbusd 2x2 tiles", amx);
  else
    std::printf("amx: the kernel refused the tile state (arch_prctl)\n");
#else
  std::printf("amx: not built (no -mamx-int8)\n");
#endif
  return 0;
}
