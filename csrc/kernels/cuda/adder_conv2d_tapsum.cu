// The tap-sum CUDA kernels; adder_conv2d_tapsum.cuh says what they compute.
#include "adder_conv2d_tapsum.cuh"
#include "launch.cuh"

namespace addernet {
namespace cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ float ld(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(__half* p, float v) { *p = __float2half(v); }
__device__ __forceinline__ void st(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

// phi(D); NaN stays NaN through hardtanh and sign, as torch's clamp and sign.
__device__ __forceinline__ float phi(float d, int fn) {
  if (fn == 0) return d < -1.f ? -1.f : (d > 1.f ? 1.f : d);
  if (fn == 1) return d > 0.f ? 1.f : (d < 0.f ? -1.f : d);
  return fabsf(d) < 1.f ? 1.f : 0.f;
}

struct Geo {
  int64_t N, C, H, W, O, KH, KW, sh, sw, ph, pw, dh, dw, G, OH, OW, Cg, Og, K;
};

Geo geo_of(const AdderConvSizes& s) {
  return Geo{s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.groups,
             s.OH, s.OW, s.C / s.groups, s.O / s.groups, (s.C / s.groups) * s.KH * s.KW};
}

template <typename T>
__global__ void tapsum_output_kernel(const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ x,
                                     const T* __restrict__ w, T* __restrict__ out, int fn, Geo g) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t total = g.N * g.O * g.OH * g.OW;
  if (idx >= total) return;
  const int64_t j = idx % g.OW, i = (idx / g.OW) % g.OH, o = (idx / (g.OW * g.OH)) % g.O;
  const int64_t n = idx / (g.OW * g.OH * g.O), grp = o / g.Og;
  float acc = 0.f;
  for (int64_t c = 0; c < g.Cg; ++c)
    for (int64_t u = 0; u < g.KH; ++u)
      for (int64_t v = 0; v < g.KW; ++v) {
        const int64_t y = i * g.sh + u * g.dh - g.ph, xx = j * g.sw + v * g.dw - g.pw;
        const bool inside = y >= 0 && y < g.H && xx >= 0 && xx < g.W;
        const int64_t pix = ((n * g.C + grp * g.Cg + c) * g.H + y) * g.W + xx;
        const int64_t k = (o * g.Cg + c) * g.KH * g.KW + u * g.KW + v;
        const float xv = inside ? ld(x + pix) : 0.f;
        float coef = (a != nullptr && inside) ? ld(a + pix) : 0.f;
        if (b != nullptr) coef += ld(b + k);
        acc += coef * phi(ld(w + k) - xv, fn);
      }
  st(out + idx, acc);
}

template <typename T>
__global__ void tapsum_input_kernel(const T* __restrict__ gout, const T* __restrict__ x, const T* __restrict__ w,
                                    T* __restrict__ out, int fn, Geo g) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t total = g.N * g.C * g.H * g.W;
  if (idx >= total) return;
  const int64_t xx = idx % g.W, y = (idx / g.W) % g.H, ch = (idx / (g.W * g.H)) % g.C;
  const int64_t n = idx / (g.W * g.H * g.C), grp = ch / g.Cg, c = ch % g.Cg;
  const float xv = ld(x + idx);
  float acc = 0.f;
  for (int64_t u = 0; u < g.KH; ++u) {
    const int64_t ty = y + g.ph - u * g.dh;  // = i * sh for the output row i reading this pixel
    if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.OH) continue;
    const int64_t i = ty / g.sh;
    for (int64_t v = 0; v < g.KW; ++v) {
      const int64_t tx = xx + g.pw - v * g.dw;
      if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.OW) continue;
      const int64_t j = tx / g.sw;
      for (int64_t oo = 0; oo < g.Og; ++oo) {
        const int64_t o = grp * g.Og + oo;
        const float gv = ld(gout + ((n * g.O + o) * g.OH + i) * g.OW + j);
        acc += gv * phi(ld(w + ((o * g.Cg + c) * g.KH + u) * g.KW + v) - xv, fn);
      }
    }
  }
  st(out + idx, acc);
}

template <typename T>
__global__ void tapsum_weight_kernel(const T* __restrict__ gout, const T* __restrict__ a, const T* __restrict__ x,
                                     const T* __restrict__ w, T* __restrict__ out, int fn, Geo g) {
  // One block per weight element (o, c, u, v); its threads stride over the N*OH*OW positions.
  const int64_t widx = blockIdx.x;
  const int64_t v = widx % g.KW, u = (widx / g.KW) % g.KH, c = (widx / (g.KW * g.KH)) % g.Cg;
  const int64_t o = widx / g.K, grp = o / g.Og;
  const float wv = ld(w + widx);
  const int64_t positions = g.N * g.OH * g.OW;
  float acc = 0.f;
  for (int64_t q = threadIdx.x; q < positions; q += blockDim.x) {
    const int64_t j = q % g.OW, i = (q / g.OW) % g.OH, n = q / (g.OW * g.OH);
    const int64_t y = i * g.sh + u * g.dh - g.ph, xx = j * g.sw + v * g.dw - g.pw;
    const bool inside = y >= 0 && y < g.H && xx >= 0 && xx < g.W;
    const int64_t pix = ((n * g.C + grp * g.Cg + c) * g.H + y) * g.W + xx;
    // Without a, every tap weighs 1, padded ones included (X is 0 there); with it, padded taps
    // weigh a's padding, 0.
    const float coef = a == nullptr ? 1.f : (inside ? ld(a + pix) : 0.f);
    const float xv = inside ? ld(x + pix) : 0.f;
    acc += ld(gout + ((n * g.O + o) * g.OH + i) * g.OW + j) * coef * phi(wv - xv, fn);
  }
  __shared__ float red[kThreads];
  red[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) st(out + widx, red[0]);
}

int64_t blocks_for(int64_t total) { return (total + kThreads - 1) / kThreads; }

}  // namespace

template <typename T>
cudaError_t adder_conv2d_tapsum_output(const T* a, const T* b, const T* input, const T* weight, T* out,
                                       int fn, const AdderConvSizes& s, cudaStream_t stream) {
  const Geo g = geo_of(s);
  const int64_t total = g.N * g.O * g.OH * g.OW;
  if (total == 0) return cudaSuccess;
  ADDERNET_LAUNCH(tapsum_output_kernel<T>, blocks_for(total), kThreads, 0, stream)(
      a, b, input, weight, out, fn, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adder_conv2d_tapsum_input(const T* grad_output, const T* input, const T* weight, T* out,
                                      int fn, const AdderConvSizes& s, cudaStream_t stream) {
  const Geo g = geo_of(s);
  const int64_t total = g.N * g.C * g.H * g.W;
  if (total == 0) return cudaSuccess;
  ADDERNET_LAUNCH(tapsum_input_kernel<T>, blocks_for(total), kThreads, 0, stream)(
      grad_output, input, weight, out, fn, g);
  return cudaGetLastError();
}

template <typename T>
cudaError_t adder_conv2d_tapsum_weight(const T* grad_output, const T* a, const T* input, const T* weight,
                                       T* out, int fn, const AdderConvSizes& s, cudaStream_t stream) {
  const Geo g = geo_of(s);
  const int64_t total = g.O * g.K;
  if (total == 0) return cudaSuccess;
  if (total > 0x7fffffffLL) return cudaErrorInvalidValue;  // one block per weight element
  ADDERNET_LAUNCH(tapsum_weight_kernel<T>, static_cast<unsigned>(total), kThreads, 0, stream)(
      grad_output, a, input, weight, out, fn, g);
  return cudaGetLastError();
}

#define ADDERNET_TAPSUM_INSTANTIATE(T)                                                               \
  template cudaError_t adder_conv2d_tapsum_output<T>(const T*, const T*, const T*, const T*, T*, int, \
                                                     const AdderConvSizes&, cudaStream_t);           \
  template cudaError_t adder_conv2d_tapsum_input<T>(const T*, const T*, const T*, T*, int,            \
                                                    const AdderConvSizes&, cudaStream_t);            \
  template cudaError_t adder_conv2d_tapsum_weight<T>(const T*, const T*, const T*, const T*, T*, int, \
                                                     const AdderConvSizes&, cudaStream_t);
ADDERNET_TAPSUM_INSTANTIATE(float)
ADDERNET_TAPSUM_INSTANTIATE(__half)
ADDERNET_TAPSUM_INSTANTIATE(__nv_bfloat16)
#undef ADDERNET_TAPSUM_INSTANTIATE

}  // namespace cuda
}  // namespace addernet
