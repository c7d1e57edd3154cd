// GPU unit test of the raw adder-convolution kernels against naive float64 loops on the host.
// Shapes are picked to reach every tile configuration (and the direct forward), ragged
// tile edges, padding, stride, dilation and groups. Outputs are poisoned with NaN first, so
// an element a kernel forgets to write fails. Exit status: 0 all passed, 1 a mismatch or
// CUDA error, 77 no GPU (CTest's skip code).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../kernels/cuda/adder_conv2d_cuda.cuh"

using addernet::cuda::AdderConvSizes;

namespace {

int g_passed = 0, g_failed = 0;

#define CHECK_CUDA(expr)                                                                 \
  do {                                                                                   \
    const cudaError_t err_ = (expr);                                                     \
    if (err_ != cudaSuccess) {                                                           \
      std::printf("CUDA error %s at %s:%d: %s\n", cudaGetErrorString(err_), __FILE__,    \
                  __LINE__, #expr);                                                      \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

template <typename T> float to_f(T v);
template <> float to_f<float>(float v) { return v; }
template <> float to_f<__half>(__half v) { return __half2float(v); }
template <> float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> T from_f(float v);
template <> float from_f<float>(float v) { return v; }
template <> __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T> const char* type_name();
template <> const char* type_name<float>() { return "float32"; }
template <> const char* type_name<__half>() { return "float16"; }
template <> const char* type_name<__nv_bfloat16>() { return "bfloat16"; }

// Relative to the sum of |terms| of each output, which bounds the float accumulation error.
template <typename T> double tolerance();
template <> double tolerance<float>() { return 2e-5; }
template <> double tolerance<__half>() { return 2e-3; }
template <> double tolerance<__nv_bfloat16>() { return 1e-2; }

struct Lcg {
  uint64_t state;
  float next(float lo, float hi) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float unit = float((state >> 40) & 0xFFFFFF) / float(1 << 24);
    return lo + (hi - lo) * unit;
  }
};

template <typename T>
struct Device {
  T* ptr = nullptr;
  size_t count = 0;
  explicit Device(size_t n) : count(n) {
    CHECK_CUDA(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)));
    poison();
  }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() { cudaFree(ptr); }
  void poison() { CHECK_CUDA(cudaMemset(ptr, 0xFF, std::max<size_t>(count, 1) * sizeof(T))); }
  void upload(const std::vector<T>& h) {
    CHECK_CUDA(cudaMemcpy(ptr, h.data(), count * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(count);
    CHECK_CUDA(cudaMemcpy(h.data(), ptr, count * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

struct Case {
  const char* name;
  int64_t N, C, H, W, O, KH, KW, sh, sw, ph, pw, dh, dw, groups;
};

AdderConvSizes sizes_of(const Case& c) {
  AdderConvSizes s{c.N, c.C, c.H, c.W, c.O, c.KH, c.KW, c.sh, c.sw, c.ph, c.pw, c.dh, c.dw,
                   c.groups, 0, 0};
  s.OH = (c.H + 2 * c.ph - c.dh * (c.KH - 1) - 1) / c.sh + 1;
  s.OW = (c.W + 2 * c.pw - c.dw * (c.KW - 1) - 1) / c.sw + 1;
  return s;
}

// Visits every (output, tap) pair with the tap's pixel (valid=false when it is padding).
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
                const int64_t xi = valid ? ((n * s.C + ci) * s.H + y) * s.W + x : -1;
                const int64_t wi = ((o * Cg + c) * s.KH + u) * s.KW + v;
                const int64_t yi = ((n * s.O + o) * s.OH + i) * s.OW + j;
                f(xi, wi, yi);
              }
}

template <typename T>
void compare(const std::string& what, const std::vector<T>& got, const std::vector<double>& ref,
             const std::vector<double>& scale) {
  const double tol = tolerance<T>();
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = to_f(got[i]);
    const double allowed = tol * (scale[i] + std::fabs(ref[i])) + 1e-6;
    if (!(std::fabs(g - ref[i]) <= allowed)) {
      if (bad++ == 0) first = i;
    }
  }
  if (bad == 0) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL %s: %zu of %zu wrong, first at %zu: got %.6g want %.6g\n", what.c_str(),
                bad, ref.size(), first, double(to_f(got[first])), ref[first]);
  }
}

template <typename T>
std::vector<T> random_vec(size_t n, Lcg& rng, float lo, float hi) {
  std::vector<T> v(n);
  for (auto& e : v) e = from_f<T>(rng.next(lo, hi));
  return v;
}

template <typename T>
std::vector<double> widen(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) d[i] = to_f(v[i]);
  return d;
}

template <typename T>
void run_case(const Case& c, uint64_t seed) {
  const AdderConvSizes s = sizes_of(c);
  const std::string tag = std::string(c.name) + " [" + type_name<T>() + "] ";
  const int64_t Cg = s.C / s.groups;
  const size_t nx = size_t(s.N * s.C * s.H * s.W), nw = size_t(s.O * Cg * s.KH * s.KW);
  const size_t ny = size_t(s.N * s.O * s.OH * s.OW);
  Lcg rng{seed};
  // X spans wider than W so that clamp(W - X, -1, 1) saturates for some taps.
  const auto hx = random_vec<T>(nx, rng, -2.f, 2.f);
  const auto hw = random_vec<T>(nw, rng, -1.f, 1.f);
  const auto hg = random_vec<T>(ny, rng, -1.f, 1.f);
  std::vector<float> hscale(size_t(s.O)), hshift(size_t(s.O));
  for (auto& e : hscale) e = rng.next(-1.5f, 1.5f);
  for (auto& e : hshift) e = rng.next(-2.f, 2.f);
  const auto X = widen(hx), Wt = widen(hw), G = widen(hg);

  std::vector<double> yref(ny, 0.0), yscale(ny, 0.0), gi(nx, 0.0), giscale(nx, 0.0);
  std::vector<double> gw(nw, 0.0), gwscale(nw, 0.0), gx(nw, 0.0), gsum(size_t(s.O), 0.0);
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double xv = xi >= 0 ? X[xi] : 0.0, wv = Wt[wi], gv = G[yi];
    yref[yi] -= std::fabs(xv - wv);
    yscale[yi] += std::fabs(xv - wv);
    gw[wi] += gv * (xv - wv);
    gwscale[wi] += std::fabs(gv * (xv - wv));
    gx[wi] += gv * xv;
    if (xi >= 0) {
      const double d = std::min(1.0, std::max(-1.0, wv - xv));
      gi[xi] += gv * d;
      giscale[xi] += std::fabs(gv * d);
    }
  });
  const int64_t plane = s.OH * s.OW;
  for (size_t yi = 0; yi < ny; ++yi) gsum[(yi / plane) % s.O] += G[yi];

  Device<T> dx(nx), dw(nw), dg(ny), dy(ny), dgi(nx), dgw(nw);
  Device<float> dscale(size_t(s.O)), dshift(size_t(s.O));
  dx.upload(hx);
  dw.upload(hw);
  dg.upload(hg);
  dscale.upload(hscale);
  dshift.upload(hshift);
  cudaStream_t stream = nullptr;

  CHECK_CUDA(addernet::cuda::adder_conv2d_forward<T>(dx.ptr, dw.ptr, nullptr, nullptr, false,
                                                     dy.ptr, s, stream));
  CHECK_CUDA(cudaDeviceSynchronize());
  compare(tag + "forward", dy.download(), yref, yscale);

  // Fused epilogue, once with both affine terms and relu, once with the shift alone.
  for (int variant = 0; variant < 2; ++variant) {
    const bool with_scale = variant == 0, relu = variant == 0;
    std::vector<double> ref(ny), sc(ny);
    for (size_t yi = 0; yi < ny; ++yi) {
      const size_t o = (yi / plane) % s.O;
      const double a = with_scale ? hscale[o] : 1.0;
      double v = a * yref[yi] + hshift[o];
      if (relu && v < 0) v = 0;
      ref[yi] = v;
      sc[yi] = std::fabs(a) * yscale[yi] + std::fabs(hshift[o]);
    }
    dy.poison();
    CHECK_CUDA(addernet::cuda::adder_conv2d_forward<T>(
        dx.ptr, dw.ptr, with_scale ? dscale.ptr : nullptr, dshift.ptr, relu, dy.ptr, s, stream));
    CHECK_CUDA(cudaDeviceSynchronize());
    compare(tag + (with_scale ? "fused scale+shift+relu" : "fused shift"), dy.download(), ref, sc);
  }

  CHECK_CUDA(addernet::cuda::adder_conv2d_grad_input<T>(dg.ptr, dx.ptr, dw.ptr, dgi.ptr, s,
                                                        stream));
  CHECK_CUDA(cudaDeviceSynchronize());
  compare(tag + "grad_input", dgi.download(), gi, giscale);

  const size_t ws_bytes = addernet::cuda::adder_conv2d_grad_weight_workspace_bytes(s);
  Device<float> dws(ws_bytes / sizeof(float));
  CHECK_CUDA(addernet::cuda::adder_conv2d_grad_weight<T>(dg.ptr, dx.ptr, dw.ptr, dws.ptr,
                                                         ws_bytes, dgw.ptr, s, stream));
  CHECK_CUDA(cudaDeviceSynchronize());
  compare(tag + "grad_weight (kernel)", dgw.download(), gw, gwscale);

  // The cuDNN route: feed the exact sum G*Xpad and sum G, check the correction kernel.
  std::vector<float> hgx(nw), hgsum(size_t(s.O));
  for (size_t i = 0; i < nw; ++i) hgx[i] = float(gx[i]);
  for (size_t o = 0; o < size_t(s.O); ++o) hgsum[o] = float(gsum[o]);
  Device<float> dgx(nw), dgsum(size_t(s.O));
  dgx.upload(hgx);
  dgsum.upload(hgsum);
  dgw.poison();
  CHECK_CUDA(addernet::cuda::adder_conv2d_grad_weight_correction<T>(dgx.ptr, dgsum.ptr, dw.ptr,
                                                                    dgw.ptr, s, stream));
  CHECK_CUDA(cudaDeviceSynchronize());
  compare(tag + "grad_weight (correction)", dgw.download(), gw, gwscale);
}

// With no batch, the weight gradient is an empty sum: it must come out as zeros.
void run_empty_batch() {
  AdderConvSizes s{0, 8, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 5, 5};
  const size_t nw = 8 * 8 * 9;
  Device<float> dw(nw), dgw(nw);
  dw.upload(std::vector<float>(nw, 0.5f));
  const size_t ws_bytes = addernet::cuda::adder_conv2d_grad_weight_workspace_bytes(s);
  Device<float> dws(ws_bytes / sizeof(float));
  CHECK_CUDA(addernet::cuda::adder_conv2d_grad_weight<float>(nullptr, nullptr, dw.ptr, dws.ptr,
                                                             ws_bytes, dgw.ptr, s, nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  compare<float>("empty batch grad_weight", dgw.download(), std::vector<double>(nw, 0.0),
                 std::vector<double>(nw, 0.0));
}

const Case kCases[] = {
    // name                         N   C   H   W   O  KH KW sh sw ph pw dh dw groups
    {"direct 3x3 pad1",             2,  3,  7,  6,  4, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"depthwise stride2",           2,  6,  9,  8,  6, 3, 3, 2, 2, 1, 1, 1, 1, 6},
    {"tiny 3x3 pad1",               3, 16,  8,  8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"tiny rgb 5x5 stride2",        2,  3, 11, 13, 12, 5, 5, 2, 2, 2, 2, 1, 1, 1},
    {"small 3x3 stride2",           2, 16,  9,  9, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"small 1x1 stride2 shortcut",  2, 32,  8,  8, 24, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"mid dilated asym",            2, 40,  7,  9, 48, 3, 2, 1, 2, 2, 1, 2, 1, 1},
    {"mid grouped",                 2, 64,  6,  6, 64, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {"large 3x3",                   1, 72,  5,  5, 136, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"large cin 1x1",               2, 136, 4,  3, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"wide batch wgrad split",      9,  8, 10, 10, 20, 3, 3, 1, 1, 0, 0, 1, 1, 1},
};

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  uint64_t seed = 1;
  for (const Case& c : kCases) {
    run_case<float>(c, seed++);
    run_case<__half>(c, seed++);
    run_case<__nv_bfloat16>(c, seed++);
  }
  run_empty_batch();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
