// Tiled implicit-GEMM kernels for the adder convolution.
//
// All three passes are GEMM-shaped with a different "multiply-add":
//   forward   rows = output channels, cols = output positions (n,i,j), reduce (c,u,v):
//             acc += |x - w|                  (FADD + FADD with a free |.| modifier)
//   grad in   rows = input channels,  cols = input positions (n,y,x),  reduce (o,u,v):
//             acc += g * clamp(w - x, -1, 1)  (x is fixed per output, kept in registers)
//   grad w    rows = output channels, cols = (c,u,v),                  reduce (n,i,j):
//             acc += g * (x - w)              (w is fixed per output, kept in registers)
// so they share one scheme: a block owns a BM x BN output tile, stages BK-deep slices of
// both operands in shared memory (im2col / col2im on the fly, zero outside the image),
// double-buffered through registers, and each thread owns a TM x TN register block.
//
// The input gradient is a gather over the output positions that read each input pixel
// (i = (y + ph - u*dh) / sh when exact), not a scatter: no atomics, deterministic, and the
// output is written once in T. With stride s, (s_h*s_w - 1)/(s_h*s_w) of the gathered taps
// are zeros; the strided layers are few, so this is accepted over a phase decomposition.
// The weight gradient splits the (huge) reduction over blocks and sums the per-split
// partials in a fixed order, again without atomics.
//
// Loads: shared-memory fragments are read as float4 (aligned by construction); global loads
// stay scalar, since im2col gathers have no alignment to rely on and T may be 2 bytes wide.
//
// Indices: element offsets are int64. The reduction indices k (forward), r (grad input)
// and in-image positions are 32-bit so they can be split with multiply-shift division;
// the launchers refuse sizes that break this.
#include "adder_conv2d_cuda.cuh"
#include "launch.cuh"

#include <algorithm>
#include <climits>

namespace addernet {
namespace cuda {
namespace {

template <typename T>
__host__ __device__ __forceinline__ float to_float(T v);
template <>
__host__ __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__host__ __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__host__ __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__host__ __device__ __forceinline__ T from_float(float v);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__host__ __device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__host__ __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Division by a runtime constant as a multiply-high and a shift (round-up multiplier),
// exact for dividends below 2^31; the kernels split indices with it in their inner loads.
struct FastDivmod {
  uint32_t divisor, multiplier, shift;

  static FastDivmod make(int64_t d) {
    FastDivmod f;
    f.divisor = d < 1 ? 1u : static_cast<uint32_t>(d);
    f.shift = 0;
    while ((uint64_t{1} << f.shift) < f.divisor) ++f.shift;
    const uint64_t span = (uint64_t{1} << f.shift) - f.divisor;
    f.multiplier = static_cast<uint32_t>(((span << 32) / f.divisor) + 1);
    return f;
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    const uint32_t hi = __umulhi(n, multiplier);
#else
    const uint32_t hi = static_cast<uint32_t>((uint64_t{n} * multiplier) >> 32);
#endif
    return (hi + n) >> shift;
  }
  __host__ __device__ __forceinline__ void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// Everything a kernel needs about the shapes, derived once on the host.
struct Geometry {
  int64_t N, C, H, W, O, OH, OW;
  int KH, KW, sh, sw, ph, pw, dh, dw;
  int groups, Cg, Og, KHW;
  int K;            // Cg*KH*KW: the forward/weight-gradient reduction and weight row length
  int R;            // Og*KH*KW: the input-gradient reduction
  int64_t HW, OHW;
  int64_t P;        // N*OH*OW output positions
  int64_t Q;        // N*H*W input positions
  bool pos32;       // P and Q below 2^31: positions split with FastDivmod
  FastDivmod fd_khw, fd_kw, fd_sh, fd_sw, fd_ow, fd_w, fd_ohw, fd_hw;
};

constexpr int64_t kInt32Max = INT_MAX;

bool make_geometry(const AdderConvSizes& s, Geometry& g) {
  if (s.N < 0 || s.C < 0 || s.H < 1 || s.W < 1 || s.O < 0 || s.KH < 1 || s.KW < 1 ||
      s.sh < 1 || s.sw < 1 || s.dh < 1 || s.dw < 1 || s.ph < 0 || s.pw < 0 || s.groups < 1 ||
      s.OH < 1 || s.OW < 1 || s.C % s.groups != 0 || s.O % s.groups != 0) {
    return false;
  }
  // Offsets within one image (ih*W, i*OW, u*dh...) and the reductions stay in 32 bits.
  const int64_t small[] = {s.H, s.W, s.OH, s.OW, s.KH * s.dh, s.KW * s.dw, s.ph, s.pw,
                           s.H * s.W, s.OH * s.OW, s.OH * s.sh + s.KH * s.dh,
                           s.OW * s.sw + s.KW * s.dw, s.H + 2 * s.ph, s.W + 2 * s.pw};
  for (int64_t v : small) {
    if (v > kInt32Max) return false;
  }
  const int64_t khw = s.KH * s.KW;
  const int64_t K = (s.C / s.groups) * khw;
  const int64_t R = (s.O / s.groups) * khw;
  // Tiles read up to one tile past the end of a reduction before masking.
  if (K > kInt32Max - 256 || R > kInt32Max - 256) return false;
  g.N = s.N; g.C = s.C; g.H = s.H; g.W = s.W; g.O = s.O; g.OH = s.OH; g.OW = s.OW;
  g.KH = int(s.KH); g.KW = int(s.KW);
  g.sh = int(s.sh); g.sw = int(s.sw); g.ph = int(s.ph); g.pw = int(s.pw);
  g.dh = int(s.dh); g.dw = int(s.dw);
  g.groups = int(std::min<int64_t>(s.groups, kInt32Max));
  if (g.groups != s.groups) return false;
  g.Cg = int(s.C / s.groups);
  g.Og = int(s.O / s.groups);
  g.KHW = int(khw);
  g.K = int(K);
  g.R = int(R);
  g.HW = s.H * s.W;
  g.OHW = s.OH * s.OW;
  g.P = s.N * g.OHW;
  g.Q = s.N * g.HW;
  g.pos32 = g.P <= kInt32Max && g.Q <= kInt32Max;
  g.fd_khw = FastDivmod::make(khw);
  g.fd_kw = FastDivmod::make(s.KW);
  g.fd_sh = FastDivmod::make(s.sh);
  g.fd_sw = FastDivmod::make(s.sw);
  g.fd_ow = FastDivmod::make(s.OW);
  g.fd_w = FastDivmod::make(s.W);
  g.fd_ohw = FastDivmod::make(g.OHW);
  g.fd_hw = FastDivmod::make(g.HW);
  return true;
}

// Output position -> (n, i, j); done once per column per block, so 64-bit division is fine
// for the rare tensors with 2^31+ positions.
__device__ __forceinline__ void split_out_pos(const Geometry& g, int64_t col, int64_t& n,
                                              int& oh, int& ow) {
  if (g.pos32) {
    uint32_t q, r, a, b;
    g.fd_ohw.divmod(uint32_t(col), q, r);
    g.fd_ow.divmod(r, a, b);
    n = q; oh = int(a); ow = int(b);
  } else {
    n = col / g.OHW;
    const int64_t rem = col - n * g.OHW;
    oh = int(rem / g.OW);
    ow = int(rem - int64_t(oh) * g.OW);
  }
}

__device__ __forceinline__ void split_in_pos(const Geometry& g, int64_t col, int64_t& n,
                                             int& y, int& x) {
  if (g.pos32) {
    uint32_t q, r, a, b;
    g.fd_hw.divmod(uint32_t(col), q, r);
    g.fd_w.divmod(r, a, b);
    n = q; y = int(a); x = int(b);
  } else {
    n = col / g.HW;
    const int64_t rem = col - n * g.HW;
    y = int(rem / g.W);
    x = int(rem - int64_t(y) * g.W);
  }
}

__device__ __forceinline__ bool in_range(int v, int64_t hi) {
  return v >= 0 && v < hi;
}

template <int BM_, int BN_, int BK_, int TM_, int TN_, int MINB_ = 1>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  // Blocks per SM to leave registers for (__launch_bounds__).
  static constexpr int MINB = MINB_;
  static constexpr int TX = BN / TN, TY = BM / TM, THREADS = TX * TY;
  // A operand (BK x BM, stored [k][m]): kk is the fast index of a thread's loads, so each
  // thread keeps one kk and THREADS/BK apart rows.
  static constexpr int A_PER = BM * BK / THREADS;
  static constexpr int A_STEP = THREADS / BK;
  // Padding the A rows by 4 floats spreads the [kk][m] stores over all banks while keeping
  // the float4 fragment reads aligned.
  static constexpr int APAD = BM + 4;
  // Same for B, whose rows the weight-gradient kernel stores with the row as fast index.
  static constexpr int BPAD = BN + 4;
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split into register blocks");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register blocks are read as float4");
  static_assert(THREADS % BK == 0 && (BM * BK) % THREADS == 0, "A loads must tile evenly");
};

// Register (i, j) of thread (ty, tx) covers tile row/col: blocks of 4 strided by the thread
// grid, so a warp's float4 fragment reads from shared memory are contiguous.
template <class Cfg>
__device__ __forceinline__ int frag_row(int ty, int i) {
  return (i / 4) * (Cfg::TY * 4) + ty * 4 + (i % 4);
}
template <class Cfg>
__device__ __forceinline__ int frag_col(int tx, int j) {
  return (j / 4) * (Cfg::TX * 4) + tx * 4 + (j % 4);
}

template <class Cfg>
__device__ __forceinline__ void load_frags(const float (*As)[Cfg::APAD],
                                           const float (*Bs)[Cfg::BPAD], int kk, int ty, int tx,
                                           float (&a)[Cfg::TM], float (&b)[Cfg::TN]) {
#pragma unroll
  for (int q = 0; q < Cfg::TM / 4; ++q) {
    const float4 v = *reinterpret_cast<const float4*>(&As[kk][q * Cfg::TY * 4 + ty * 4]);
    a[4 * q] = v.x; a[4 * q + 1] = v.y; a[4 * q + 2] = v.z; a[4 * q + 3] = v.w;
  }
#pragma unroll
  for (int q = 0; q < Cfg::TN / 4; ++q) {
    const float4 v = *reinterpret_cast<const float4*>(&Bs[kk][q * Cfg::TX * 4 + tx * 4]);
    b[4 * q] = v.x; b[4 * q + 1] = v.y; b[4 * q + 2] = v.z; b[4 * q + 3] = v.w;
  }
}

// B operand loads of the forward and input-gradient kernels: the column (position) is the
// fast index so that neighbouring threads read neighbouring pixels; each thread keeps CP
// columns (decoded once per block) and RP rows.
template <class Cfg>
struct ColMajorB {
  static constexpr int BCOL = Cfg::BN < Cfg::THREADS ? Cfg::BN : Cfg::THREADS;
  static constexpr int CP = Cfg::BN / BCOL;
  static constexpr int RSTEP = Cfg::THREADS / BCOL;
  static constexpr int RP = Cfg::BK / RSTEP;
  static_assert(Cfg::BN % BCOL == 0 && Cfg::THREADS % BCOL == 0 && Cfg::BK % RSTEP == 0,
                "B loads must tile evenly");
};

template <class Cfg, typename Op>
__device__ __forceinline__ void mma_tile(const float (*As)[Cfg::APAD],
                                         const float (*Bs)[Cfg::BPAD], int ty, int tx,
                                         float (&acc)[Cfg::TM][Cfg::TN], Op op) {
#pragma unroll
  for (int kk = 0; kk < Cfg::BK; ++kk) {
    float a[Cfg::TM], b[Cfg::TN];
    load_frags<Cfg>(As, Bs, kk, ty, tx, a, b);
#pragma unroll
    for (int i = 0; i < Cfg::TM; ++i) {
#pragma unroll
      for (int j = 0; j < Cfg::TN; ++j) op(acc[i][j], a[i], b[j], i, j);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Forward: Y[n, g*Og+m, p] = -sum_k |Xcol[n, g, k, p] - W[g*Og+m, k]|, then the epilogue.

struct AbsDiff {
  __device__ __forceinline__ void operator()(float& acc, float a, float b, int, int) const {
    acc += fabsf(b - a);
  }
};

__device__ __forceinline__ float epilogue(float acc, const float* scale, const float* shift,
                                          bool relu, int64_t o) {
  float v = -acc;
  if (scale != nullptr) v *= scale[o];
  if (shift != nullptr) v += shift[o];
  // Written so that NaN survives, as torch.relu keeps it.
  if (relu && v < 0.f) v = 0.f;
  return v;
}

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MINB)
    forward_tiled_kernel(const T* __restrict__ x, const T* __restrict__ w,
                         const float* __restrict__ scale, const float* __restrict__ shift,
                         bool relu, T* __restrict__ y, Geometry geo) {
  using B = ColMajorB<Cfg>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  __shared__ __align__(16) float As[2][BK][Cfg::APAD];
  __shared__ __align__(16) float Bs[2][BK][Cfg::BPAD];

  const int tid = threadIdx.x;
  const int tx = tid % Cfg::TX, ty = tid / Cfg::TX;
  const int a_kk = tid % BK, a_m = tid / BK;
  const int b_col = tid % B::BCOL, b_row = tid / B::BCOL;
  const int64_t col0 = int64_t(blockIdx.x) * BN;
  const int ktiles = (geo.K + BK - 1) / BK;
  const int mtiles = (geo.Og + BM - 1) / BM;
  const int64_t chw = geo.C * geo.HW;

  for (int64_t by = blockIdx.y; by < int64_t(geo.groups) * mtiles; by += gridDim.y) {
    const int g = int(by / mtiles);
    const int m0 = int(by - int64_t(g) * mtiles) * BM;

    // Rows of this thread's A loads: a_row + i * a_step, valid while i < a_rows.
    const int64_t a_row = (int64_t(g) * geo.Og + m0 + a_m) * geo.K;
    const int64_t a_step = int64_t(Cfg::A_STEP) * geo.K;
    const int a_rows = geo.Og - m0 - a_m;
    int64_t b_base[B::CP];
    int b_ih0[B::CP], b_iw0[B::CP];
#pragma unroll
    for (int j = 0; j < B::CP; ++j) {
      const int64_t col = col0 + b_col + j * B::BCOL;
      int64_t n = 0;
      int oh = 0, ow = 0;
      if (col < geo.P) split_out_pos(geo, col, n, oh, ow);
      b_base[j] = n * chw + int64_t(g) * geo.Cg * geo.HW;
      // Columns past the end read nothing: an origin this far out fails every bounds test.
      b_ih0[j] = col < geo.P ? oh * geo.sh - geo.ph : INT_MIN / 2;
      b_iw0[j] = ow * geo.sw - geo.pw;
    }

    float ra[Cfg::A_PER];
    float rb[B::RP][B::CP];
    auto load = [&](int kt) {
      const int k0 = kt * BK;
      const int ka = k0 + a_kk;
#pragma unroll
      for (int i = 0; i < Cfg::A_PER; ++i) {
        const bool ok = ka < geo.K && i * Cfg::A_STEP < a_rows;
        ra[i] = ok ? to_float(w[a_row + i * a_step + ka]) : 0.f;
      }
#pragma unroll
      for (int r = 0; r < B::RP; ++r) {
        const int k = k0 + b_row + r * B::RSTEP;
        uint32_t c, t, u, v;
        geo.fd_khw.divmod(uint32_t(k), c, t);
        geo.fd_kw.divmod(t, u, v);
        const int udh = int(u) * geo.dh, vdw = int(v) * geo.dw;
        const int64_t coff = int64_t(c) * geo.HW;
#pragma unroll
        for (int j = 0; j < B::CP; ++j) {
          const int ih = b_ih0[j] + udh, iw = b_iw0[j] + vdw;
          // k past K reads 0 and so does its weight: |0 - 0| adds nothing.
          const bool ok = k < geo.K && in_range(ih, geo.H) && in_range(iw, geo.W);
          rb[r][j] = ok ? to_float(x[b_base[j] + coff + int64_t(ih) * geo.W + iw]) : 0.f;
        }
      }
    };
    auto store = [&](int buf) {
#pragma unroll
      for (int i = 0; i < Cfg::A_PER; ++i) As[buf][a_kk][a_m + i * Cfg::A_STEP] = ra[i];
#pragma unroll
      for (int r = 0; r < B::RP; ++r) {
#pragma unroll
        for (int j = 0; j < B::CP; ++j) {
          Bs[buf][b_row + r * B::RSTEP][b_col + j * B::BCOL] = rb[r][j];
        }
      }
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
    }
    if (ktiles > 0) {
      load(0);
      store(0);
    }
    __syncthreads();
    for (int kt = 0; kt < ktiles; ++kt) {
      const int buf = kt & 1;
      const bool more = kt + 1 < ktiles;
      if (more) load(kt + 1);  // global loads in flight while this slice is computed
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, AbsDiff{});
      if (more) store(buf ^ 1);
      __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = col0 + frag_col<Cfg>(tx, j);
      if (col >= geo.P) continue;
      int64_t n;
      int oh, ow;
      split_out_pos(geo, col, n, oh, ow);
      const int64_t pos = n * geo.O * geo.OHW + int64_t(oh) * geo.OW + ow;
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int m = m0 + frag_row<Cfg>(ty, i);
        if (m >= geo.Og) continue;
        const int64_t o = int64_t(g) * geo.Og + m;
        y[pos + o * geo.OHW] = from_float<T>(epilogue(acc[i][j], scale, shift, relu, o));
      }
    }
  }
}

// One thread per output: for very few output channels per group (depthwise-like) a tile of
// channels would be mostly empty.
template <typename T>
__global__ void forward_direct_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                      const float* __restrict__ scale,
                                      const float* __restrict__ shift, bool relu,
                                      T* __restrict__ y, Geometry geo) {
  const int64_t total = geo.P * geo.O;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = idx % geo.OW;
    int64_t t = idx / geo.OW;
    const int64_t oh = t % geo.OH;
    t /= geo.OH;
    const int64_t o = t % geo.O;
    const int64_t n = t / geo.O;
    const int64_t g = o / geo.Og;
    const T* xg = x + (n * geo.C + g * geo.Cg) * geo.HW;
    const T* wo = w + o * geo.K;
    const int ih0 = int(oh) * geo.sh - geo.ph, iw0 = int(ow) * geo.sw - geo.pw;
    float acc = 0.f;
    for (int c = 0; c < geo.Cg; ++c) {
      for (int u = 0; u < geo.KH; ++u) {
        const int ih = ih0 + u * geo.dh;
        for (int v = 0; v < geo.KW; ++v) {
          const int iw = iw0 + v * geo.dw;
          const float xv = (in_range(ih, geo.H) && in_range(iw, geo.W))
                               ? to_float(xg[c * geo.HW + int64_t(ih) * geo.W + iw])
                               : 0.f;
          acc += fabsf(xv - to_float(wo[(c * geo.KH + u) * geo.KW + v]));
        }
      }
    }
    y[idx] = from_float<T>(epilogue(acc, scale, shift, relu, o));
  }
}

// ---------------------------------------------------------------------------------------
// Input gradient: GI[n, g*Cg+m, q] = sum_r G~[n, g, r, q] * clamp(W~[r, m] - X[n, g*Cg+m, q])
// with r = (o, u, v), W~[r, m] = W[g*Og+o, m, u, v] and G~ the output gradient at the
// position that tap (u, v) of output channel o maps onto input pixel q (0 when none).

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MINB)
    grad_input_tiled_kernel(const T* __restrict__ go, const T* __restrict__ x,
                            const T* __restrict__ w, T* __restrict__ gi, Geometry geo) {
  using B = ColMajorB<Cfg>;
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  __shared__ __align__(16) float As[2][BK][Cfg::APAD];
  __shared__ __align__(16) float Bs[2][BK][Cfg::BPAD];

  const int tid = threadIdx.x;
  const int tx = tid % Cfg::TX, ty = tid / Cfg::TX;
  const int a_kk = tid % BK, a_m = tid / BK;
  const int b_col = tid % B::BCOL, b_row = tid / B::BCOL;
  const int64_t col0 = int64_t(blockIdx.x) * BN;
  const int ktiles = (geo.R + BK - 1) / BK;
  const int mtiles = (geo.Cg + BM - 1) / BM;
  const int64_t chw = geo.C * geo.HW;
  const int64_t ohw_o = geo.O * geo.OHW;

  for (int64_t by = blockIdx.y; by < int64_t(geo.groups) * mtiles; by += gridDim.y) {
    const int g = int(by / mtiles);
    const int m0 = int(by - int64_t(g) * mtiles) * BM;

    const int a_rows = geo.Cg - m0 - a_m;
    int64_t b_base[B::CP];
    int b_y[B::CP], b_x[B::CP];
#pragma unroll
    for (int j = 0; j < B::CP; ++j) {
      const int64_t col = col0 + b_col + j * B::BCOL;
      int64_t n = 0;
      int yy = 0, xx = 0;
      if (col < geo.Q) split_in_pos(geo, col, n, yy, xx);
      b_base[j] = n * ohw_o + int64_t(g) * geo.Og * geo.OHW;
      // Past-the-end columns get a row so far below that no output position maps onto it.
      b_y[j] = col < geo.Q ? yy + geo.ph : INT_MIN / 2;
      b_x[j] = xx + geo.pw;
    }

    // X at this thread's outputs: constant over the reduction, so it lives in registers.
    int64_t x_pos[TN];
    float xr[TM][TN];
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = col0 + frag_col<Cfg>(tx, j);
      int64_t n = 0;
      int yy = 0, xx = 0;
      const bool ok = col < geo.Q;
      if (ok) split_in_pos(geo, col, n, yy, xx);
      x_pos[j] = ok ? n * chw + int64_t(g) * geo.Cg * geo.HW + int64_t(yy) * geo.W + xx : -1;
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int m = m0 + frag_row<Cfg>(ty, i);
        xr[i][j] = (ok && m < geo.Cg) ? to_float(x[x_pos[j] + int64_t(m) * geo.HW]) : 0.f;
      }
    }

    float ra[Cfg::A_PER];
    float rb[B::RP][B::CP];
    auto load = [&](int kt) {
      const int k0 = kt * BK;
      {
        const int r = k0 + a_kk;
        uint32_t o, t;
        geo.fd_khw.divmod(uint32_t(r), o, t);
        const int64_t wrow = (int64_t(g) * geo.Og + o) * geo.K + t + (m0 + a_m) * geo.KHW;
#pragma unroll
        for (int i = 0; i < Cfg::A_PER; ++i) {
          const bool ok = r < geo.R && i * Cfg::A_STEP < a_rows;
          ra[i] = ok ? to_float(w[wrow + i * Cfg::A_STEP * geo.KHW]) : 0.f;
        }
      }
#pragma unroll
      for (int rr = 0; rr < B::RP; ++rr) {
        const int r = k0 + b_row + rr * B::RSTEP;
        uint32_t o, t, u, v;
        geo.fd_khw.divmod(uint32_t(r), o, t);
        geo.fd_kw.divmod(t, u, v);
        const int udh = int(u) * geo.dh, vdw = int(v) * geo.dw;
        const int64_t ooff = int64_t(o) * geo.OHW;
#pragma unroll
        for (int j = 0; j < B::CP; ++j) {
          const int iy = b_y[j] - udh, ix = b_x[j] - vdw;
          float val = 0.f;
          if (r < geo.R && iy >= 0 && ix >= 0) {
            uint32_t i, ri, jj, rj;
            geo.fd_sh.divmod(uint32_t(iy), i, ri);
            geo.fd_sw.divmod(uint32_t(ix), jj, rj);
            if (ri == 0 && rj == 0 && i < geo.OH && jj < geo.OW) {
              val = to_float(go[b_base[j] + ooff + int64_t(i) * geo.OW + jj]);
            }
          }
          rb[rr][j] = val;
        }
      }
    };
    auto store = [&](int buf) {
#pragma unroll
      for (int i = 0; i < Cfg::A_PER; ++i) As[buf][a_kk][a_m + i * Cfg::A_STEP] = ra[i];
#pragma unroll
      for (int rr = 0; rr < B::RP; ++rr) {
#pragma unroll
        for (int j = 0; j < B::CP; ++j) {
          Bs[buf][b_row + rr * B::RSTEP][b_col + j * B::BCOL] = rb[rr][j];
        }
      }
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
    }
    auto op = [&](float& a_out, float wv, float gv, int i, int j) {
      // Compares, not fminf/fmaxf: those return the other operand for a NaN, so a NaN in x or w
      // would leave the gradient finite where torch's hardtanh (and the CPU kernels) keep NaN.
      float d = wv - xr[i][j];
      d = d < -1.f ? -1.f : (d > 1.f ? 1.f : d);
      a_out = fmaf(gv, d, a_out);
    };
    if (ktiles > 0) {
      load(0);
      store(0);
    }
    __syncthreads();
    for (int kt = 0; kt < ktiles; ++kt) {
      const int buf = kt & 1;
      const bool more = kt + 1 < ktiles;
      if (more) load(kt + 1);
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, op);
      if (more) store(buf ^ 1);
      __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < TN; ++j) {
      if (x_pos[j] < 0) continue;
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int m = m0 + frag_row<Cfg>(ty, i);
        if (m < geo.Cg) gi[x_pos[j] + int64_t(m) * geo.HW] = from_float<T>(acc[i][j]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Weight gradient: WS[z, g*Og+m, k] = sum over split z of G[n, g*Og+m, p] * (Xcol - W[.., k]).
// The reduction runs over (n, chunk of BK positions of image n) so positions never need a
// 64-bit split; split z takes a contiguous run of those chunks.

template <typename T, class Cfg>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MINB)
    grad_weight_tiled_kernel(const T* __restrict__ go, const T* __restrict__ x,
                             const T* __restrict__ w, float* __restrict__ ws, Geometry geo,
                             int64_t pchunks, int splits) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  // B (BK positions x BN taps) is loaded with the position as the fast index too.
  constexpr int B_PER = BN * BK / Cfg::THREADS;
  static_assert((BN * BK) % Cfg::THREADS == 0, "B loads must tile evenly");
  __shared__ __align__(16) float As[2][BK][Cfg::APAD];
  __shared__ __align__(16) float Bs[2][BK][Cfg::BPAD];

  const int tid = threadIdx.x;
  const int tx = tid % Cfg::TX, ty = tid / Cfg::TX;
  const int l_kk = tid % BK, l_idx = tid / BK;
  const int k0 = int(blockIdx.x) * BN;
  const int mtiles = (geo.Og + BM - 1) / BM;
  const int64_t chw = geo.C * geo.HW;
  const int64_t ohw_o = geo.O * geo.OHW;
  const int64_t total = geo.N * pchunks;
  const int64_t c_begin = total * blockIdx.z / splits;
  const int64_t c_end = total * (blockIdx.z + 1) / splits;
  const int64_t ktiles = c_end - c_begin;
  float* wsz = ws + int64_t(blockIdx.z) * geo.O * geo.K;

  // The block's taps k = (c, u, v) are fixed: split them once into a shared table rather
  // than keeping B_PER 64-bit offsets per thread in registers.
  __shared__ int64_t s_off[BN];
  __shared__ int s_udh[BN], s_vdw[BN];
  for (int col = tid; col < BN; col += Cfg::THREADS) {
    const int k = k0 + col;
    uint32_t c, t, u, v;
    geo.fd_khw.divmod(uint32_t(k), c, t);
    geo.fd_kw.divmod(t, u, v);
    // A tap past K gets a row offset that fails every bounds test, so it reads 0.
    s_udh[col] = k < geo.K ? int(u) * geo.dh : INT_MIN / 2;
    s_vdw[col] = int(v) * geo.dw;
    s_off[col] = int64_t(c) * geo.HW + int64_t(s_udh[col]) * geo.W + s_vdw[col];
  }
  __syncthreads();

  for (int64_t by = blockIdx.y; by < int64_t(geo.groups) * mtiles; by += gridDim.y) {
    const int g = int(by / mtiles);
    const int m0 = int(by - int64_t(g) * mtiles) * BM;

    const int64_t a_off = (int64_t(g) * geo.Og + m0 + l_idx) * geo.OHW;
    const int64_t a_step = int64_t(Cfg::A_STEP) * geo.OHW;
    const int a_rows = geo.Og - m0 - l_idx;
    // W at this thread's outputs, constant over the reduction.
    float wr[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + frag_row<Cfg>(ty, i);
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int k = k0 + frag_col<Cfg>(tx, j);
        wr[i][j] = (m < geo.Og && k < geo.K)
                       ? to_float(w[(int64_t(g) * geo.Og + m) * geo.K + k])
                       : 0.f;
      }
    }

    // The chunk the next load() reads, walked incrementally.
    int64_t ln = 0, lpc = 0;
    if (ktiles > 0) {
      ln = c_begin / pchunks;
      lpc = c_begin - ln * pchunks;
    }
    float ra[Cfg::A_PER];
    float rb[B_PER];
    auto load = [&]() {
      const int64_t p = lpc * BK + l_kk;
      const bool pok = p < geo.OHW;
      uint32_t oh = 0, ow = 0;
      if (pok) geo.fd_ow.divmod(uint32_t(p), oh, ow);
      const int64_t gbase = ln * ohw_o + p;
#pragma unroll
      for (int i = 0; i < Cfg::A_PER; ++i) {
        const bool ok = pok && i * Cfg::A_STEP < a_rows;
        ra[i] = ok ? to_float(go[gbase + a_off + i * a_step]) : 0.f;
      }
      const int ih0 = int(oh) * geo.sh - geo.ph, iw0 = int(ow) * geo.sw - geo.pw;
      const int64_t xbase =
          ln * chw + int64_t(g) * geo.Cg * geo.HW + int64_t(ih0) * geo.W + iw0;
#pragma unroll
      for (int i = 0; i < B_PER; ++i) {
        const int col = l_idx + i * Cfg::A_STEP;
        const bool ok = pok && in_range(ih0 + s_udh[col], geo.H) &&
                        in_range(iw0 + s_vdw[col], geo.W);
        rb[i] = ok ? to_float(x[xbase + s_off[col]]) : 0.f;
      }
      if (++lpc == pchunks) {
        lpc = 0;
        ++ln;
      }
    };
    auto store = [&](int buf) {
#pragma unroll
      for (int i = 0; i < Cfg::A_PER; ++i) As[buf][l_kk][l_idx + i * Cfg::A_STEP] = ra[i];
#pragma unroll
      for (int i = 0; i < B_PER; ++i) Bs[buf][l_kk][l_idx + i * Cfg::A_STEP] = rb[i];
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;
    }
    // A padded tap reads x = 0 and adds g * (0 - w); a position past the image has g = 0.
    auto op = [&](float& a_out, float gv, float xv, int i, int j) {
      a_out = fmaf(gv, xv - wr[i][j], a_out);
    };
    if (ktiles > 0) {
      load();
      store(0);
    }
    __syncthreads();
    for (int64_t kt = 0; kt < ktiles; ++kt) {
      const int buf = int(kt & 1);
      const bool more = kt + 1 < ktiles;
      if (more) load();
      mma_tile<Cfg>(As[buf], Bs[buf], ty, tx, acc, op);
      if (more) store(buf ^ 1);
      __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int m = m0 + frag_row<Cfg>(ty, i);
      if (m >= geo.Og) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int k = k0 + frag_col<Cfg>(tx, j);
        if (k < geo.K) wsz[(int64_t(g) * geo.Og + m) * geo.K + k] = acc[i][j];
      }
    }
  }
}

// Sums the per-split partials in split order, so the result does not depend on scheduling.
template <typename T>
__global__ void sum_splits_kernel(const float* __restrict__ ws, int splits, int64_t count,
                                  T* __restrict__ out) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += ws[int64_t(z) * count + idx];
    out[idx] = from_float<T>(s);
  }
}

template <typename T>
__global__ void correction_kernel(const float* __restrict__ conv_grad,
                                  const float* __restrict__ gsum, const T* __restrict__ w,
                                  T* __restrict__ out, int64_t count, int64_t row) {
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < count;
       idx += int64_t(gridDim.x) * blockDim.x) {
    out[idx] = from_float<T>(conv_grad[idx] - to_float(w[idx]) * gsum[idx / row]);
  }
}

// ---------------------------------------------------------------------------------------
// Launch plumbing.

constexpr int kMaxGridY = 65535;

dim3 elementwise_grid(int64_t count, int threads) {
  const int64_t blocks = std::min<int64_t>((count + threads - 1) / threads, int64_t(1) << 20);
  return dim3(unsigned(std::max<int64_t>(blocks, 1)));
}

template <class Cfg>
bool tiled_grid(int64_t cols, int64_t rows_per_group, int groups, dim3& grid) {
  const int64_t xt = (cols + Cfg::BN - 1) / Cfg::BN;
  if (xt > kInt32Max) return false;
  const int64_t yt = int64_t(groups) * ((rows_per_group + Cfg::BM - 1) / Cfg::BM);
  grid = dim3(unsigned(xt), unsigned(std::min<int64_t>(std::max<int64_t>(yt, 1), kMaxGridY)));
  return true;
}

// Tile shapes by the GEMM row count (output channels per group, or input channels per group
// for the input gradient): small layers get short, wide tiles instead of idle rows.
using FwdTiny = Tile<16, 256, 8, 4, 8, 3>;
using FwdSmall = Tile<32, 128, 8, 4, 8, 4>;
using FwdMid = Tile<64, 128, 8, 8, 8, 3>;
using FwdLarge = Tile<128, 128, 8, 8, 8, 1>;
// The gradient kernels keep a second TM x TN register block (X or W), so their blocks are
// 32 outputs per thread.
using GinTiny = Tile<16, 256, 8, 4, 8, 3>;
using GinSmall = Tile<32, 128, 8, 4, 8, 3>;
using GinMid = Tile<64, 128, 8, 8, 4, 1>;
using GinLarge = Tile<128, 64, 8, 8, 4, 1>;
using GwTiny = Tile<16, 64, 16, 4, 4, 6>;
using GwSmall = Tile<32, 64, 16, 4, 4, 4>;
using GwLarge = Tile<64, 128, 16, 8, 4, 1>;

constexpr int kDirectMaxOg = 4;

template <typename T, class Cfg>
cudaError_t launch_forward(const T* x, const T* w, const float* scale, const float* shift,
                           bool relu, T* y, const Geometry& geo, cudaStream_t stream) {
  dim3 grid;
  if (!tiled_grid<Cfg>(geo.P, geo.Og, geo.groups, grid)) return cudaErrorInvalidValue;
  auto kernel = &forward_tiled_kernel<T, Cfg>;
  ADDERNET_LAUNCH(kernel, grid, Cfg::THREADS, 0, stream)(x, w, scale, shift, relu, y, geo);
  return cudaGetLastError();
}

template <typename T, class Cfg>
cudaError_t launch_grad_input(const T* go, const T* x, const T* w, T* gi, const Geometry& geo,
                              cudaStream_t stream) {
  dim3 grid;
  if (!tiled_grid<Cfg>(geo.Q, geo.Cg, geo.groups, grid)) return cudaErrorInvalidValue;
  auto kernel = &grad_input_tiled_kernel<T, Cfg>;
  ADDERNET_LAUNCH(kernel, grid, Cfg::THREADS, 0, stream)(go, x, w, gi, geo);
  return cudaGetLastError();
}

struct WgradPlan {
  int config;  // 0 tiny, 1 small, 2 large
  int bm, bn, bk;
  int64_t pchunks;
  int splits;
};

// Enough blocks to fill any current GPU a few times over; a split must still get several
// chunks so that its partial is worth the workspace traffic. Depends only on the sizes, so
// the workspace query and the launch agree.
WgradPlan plan_grad_weight(const Geometry& geo) {
  WgradPlan p;
  if (geo.Og <= GwTiny::BM) {
    p = {0, GwTiny::BM, GwTiny::BN, GwTiny::BK, 0, 1};
  } else if (geo.Og <= GwSmall::BM) {
    p = {1, GwSmall::BM, GwSmall::BN, GwSmall::BK, 0, 1};
  } else {
    p = {2, GwLarge::BM, GwLarge::BN, GwLarge::BK, 0, 1};
  }
  constexpr int64_t kTargetBlocks = 1024, kMinChunksPerSplit = 4, kMaxSplits = 1024;
  p.pchunks = (geo.OHW + p.bk - 1) / p.bk;
  const int64_t tiles = ((geo.K + p.bn - 1) / p.bn) * geo.groups * ((geo.Og + p.bm - 1) / p.bm);
  const int64_t chunks = geo.N * p.pchunks;
  int64_t s = (kTargetBlocks + tiles - 1) / std::max<int64_t>(tiles, 1);
  s = std::min(s, chunks / kMinChunksPerSplit);
  s = std::min(s, kMaxSplits);
  p.splits = int(std::max<int64_t>(s, 1));
  return p;
}

template <typename T, class Cfg>
cudaError_t launch_grad_weight_tiles(const T* go, const T* x, const T* w, float* ws,
                                     const Geometry& geo, const WgradPlan& plan,
                                     cudaStream_t stream) {
  dim3 grid;
  if (!tiled_grid<Cfg>(geo.K, geo.Og, geo.groups, grid)) return cudaErrorInvalidValue;
  grid.z = unsigned(plan.splits);
  auto kernel = &grad_weight_tiled_kernel<T, Cfg>;
  ADDERNET_LAUNCH(kernel, grid, Cfg::THREADS, 0, stream)(go, x, w, ws, geo, plan.pchunks,
                                                         plan.splits);
  return cudaGetLastError();
}

}  // namespace

template <typename T>
cudaError_t adder_conv2d_forward(const T* input, const T* weight, const float* scale,
                                 const float* shift, bool relu, T* output,
                                 const AdderConvSizes& s, cudaStream_t stream) {
  Geometry geo;
  if (!make_geometry(s, geo)) return cudaErrorInvalidValue;
  if (geo.P == 0 || geo.O == 0) return cudaSuccess;
  if (geo.Og <= kDirectMaxOg) {
    constexpr int threads = 256;
    auto kernel = &forward_direct_kernel<T>;
    ADDERNET_LAUNCH(kernel, elementwise_grid(geo.P * geo.O, threads), threads, 0, stream)(
        input, weight, scale, shift, relu, output, geo);
    return cudaGetLastError();
  }
  if (geo.Og <= FwdTiny::BM) {
    return launch_forward<T, FwdTiny>(input, weight, scale, shift, relu, output, geo, stream);
  }
  if (geo.Og <= FwdSmall::BM) {
    return launch_forward<T, FwdSmall>(input, weight, scale, shift, relu, output, geo, stream);
  }
  if (geo.Og <= FwdMid::BM) {
    return launch_forward<T, FwdMid>(input, weight, scale, shift, relu, output, geo, stream);
  }
  return launch_forward<T, FwdLarge>(input, weight, scale, shift, relu, output, geo, stream);
}

template <typename T>
cudaError_t adder_conv2d_grad_input(const T* grad_output, const T* input, const T* weight,
                                    T* grad_input, const AdderConvSizes& s, cudaStream_t stream) {
  Geometry geo;
  if (!make_geometry(s, geo)) return cudaErrorInvalidValue;
  if (geo.Q == 0) return cudaSuccess;
  if (geo.Cg <= GinTiny::BM) {
    return launch_grad_input<T, GinTiny>(grad_output, input, weight, grad_input, geo, stream);
  }
  if (geo.Cg <= GinSmall::BM) {
    return launch_grad_input<T, GinSmall>(grad_output, input, weight, grad_input, geo, stream);
  }
  if (geo.Cg <= GinMid::BM) {
    return launch_grad_input<T, GinMid>(grad_output, input, weight, grad_input, geo, stream);
  }
  return launch_grad_input<T, GinLarge>(grad_output, input, weight, grad_input, geo, stream);
}

size_t adder_conv2d_grad_weight_workspace_bytes(const AdderConvSizes& s) {
  Geometry geo;
  if (!make_geometry(s, geo)) return 0;
  const WgradPlan plan = plan_grad_weight(geo);
  return size_t(plan.splits) * size_t(geo.O) * size_t(geo.K) * sizeof(float);
}

template <typename T>
cudaError_t adder_conv2d_grad_weight(const T* grad_output, const T* input, const T* weight,
                                     float* workspace, size_t workspace_bytes, T* grad_weight,
                                     const AdderConvSizes& s, cudaStream_t stream) {
  Geometry geo;
  if (!make_geometry(s, geo)) return cudaErrorInvalidValue;
  const int64_t count = geo.O * geo.K;
  if (count == 0) return cudaSuccess;
  const WgradPlan plan = plan_grad_weight(geo);
  if (workspace == nullptr ||
      workspace_bytes < size_t(plan.splits) * size_t(count) * sizeof(float)) {
    return cudaErrorInvalidValue;
  }
  cudaError_t err;
  switch (plan.config) {
    case 0:
      err = launch_grad_weight_tiles<T, GwTiny>(grad_output, input, weight, workspace, geo, plan,
                                                stream);
      break;
    case 1:
      err = launch_grad_weight_tiles<T, GwSmall>(grad_output, input, weight, workspace, geo,
                                                 plan, stream);
      break;
    default:
      err = launch_grad_weight_tiles<T, GwLarge>(grad_output, input, weight, workspace, geo,
                                                 plan, stream);
      break;
  }
  if (err != cudaSuccess) return err;
  constexpr int threads = 256;
  auto kernel = &sum_splits_kernel<T>;
  ADDERNET_LAUNCH(kernel, elementwise_grid(count, threads), threads, 0, stream)(
      workspace, plan.splits, count, grad_weight);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adder_conv2d_grad_weight_correction(const float* conv_weight_grad,
                                                const float* grad_output_sum, const T* weight,
                                                T* grad_weight, const AdderConvSizes& s,
                                                cudaStream_t stream) {
  Geometry geo;
  if (!make_geometry(s, geo)) return cudaErrorInvalidValue;
  const int64_t count = geo.O * geo.K;
  if (count == 0) return cudaSuccess;
  constexpr int threads = 256;
  auto kernel = &correction_kernel<T>;
  ADDERNET_LAUNCH(kernel, elementwise_grid(count, threads), threads, 0, stream)(
      conv_weight_grad, grad_output_sum, weight, grad_weight, count, int64_t(geo.K));
  return cudaGetLastError();
}

#define ADDERNET_INSTANTIATE(T)                                                               \
  template cudaError_t adder_conv2d_forward<T>(const T*, const T*, const float*, const float*, \
                                               bool, T*, const AdderConvSizes&, cudaStream_t); \
  template cudaError_t adder_conv2d_grad_input<T>(const T*, const T*, const T*, T*,           \
                                                  const AdderConvSizes&, cudaStream_t);       \
  template cudaError_t adder_conv2d_grad_weight<T>(const T*, const T*, const T*, float*,      \
                                                   size_t, T*, const AdderConvSizes&,         \
                                                   cudaStream_t);                             \
  template cudaError_t adder_conv2d_grad_weight_correction<T>(                                \
      const float*, const float*, const T*, T*, const AdderConvSizes&, cudaStream_t);

ADDERNET_INSTANTIATE(float)
ADDERNET_INSTANTIATE(__half)
ADDERNET_INSTANTIATE(__nv_bfloat16)
#undef ADDERNET_INSTANTIATE

}  // namespace cuda
}  // namespace addernet
