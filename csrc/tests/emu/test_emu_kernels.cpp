// Runs the project's raw CUDA kernels on the CPU under the SIMT emulator (simt_emu.h) over the
// odd shapes of csrc/tests/odd_shapes.h and the tile-boundary shapes of emu_cases.h, in
// float32, float16 and bfloat16, against float64 loops. Every check runs under three schedules
// (threads and blocks forward; both reversed; both in a seeded random order): the outputs must
// agree bit for bit, match the reference, and raise no emulator error (shared-memory race,
// read of unwritten shared memory, barrier divergence, barrier after exit, invalid launch).
//
// usage: test_emu_kernels [--quick] [--types fhb] [--only SUBSTR] [--schedules 1|2|3]
//                         [--skip SUBSTR] [--tapsum-max-blocks N] [--expect KIND,...]
// --expect turns the run into a mutant's check: exit 0 only if every listed finding occurred
// (value, order, race, unwritten, divergence, exit, launch), "agree" if no two schedules
// differed, "correct" if every value matched. Without it: exit 0 only if everything passed.
// Built with -DEMU_FLOAT_ONLY it runs float32 only (for the float-only kernel variants).
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>

#include "../../kernels/cuda/adder_conv2d_tapsum.cuh"
#include "emu_cases.h"
#include "simt_ctl.h"

namespace ac = addernet::cuda;
using namespace emu_test;

namespace {

template <typename T> float to_f(T v) { return float(v); }
template <> float to_f<__half>(__half v) { return __half2float(v); }
template <> float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> T from_f(float v) { return v; }
template <> __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <typename T> const char* type_name();
template <> const char* type_name<float>() { return "f32"; }
template <> const char* type_name<__half>() { return "f16"; }
template <> const char* type_name<__nv_bfloat16>() { return "bf16"; }
// As csrc/tests/test_cuda_kernels.cu: relative to sum |terms| + |ref|.
template <typename T> double tolerance();
template <> double tolerance<float>() { return 2e-5; }
template <> double tolerance<__half>() { return 2e-3; }
template <> double tolerance<__nv_bfloat16>() { return 1e-2; }

struct Options {
  std::string types = "fhb", only, skip;
  bool quick = false;
  int schedules = 3;
  int64_t tapsum_max_blocks = 4000;
  std::vector<std::string> expect;
} g_opt;

struct Totals {
  int checks = 0, passed = 0, value_fail = 0, order_fail = 0, emu_fail = 0, skipped = 0;
  int refusals = 0;
} g_tot;
std::map<std::string, double> g_time;       // seconds per kernel, all schedules
std::map<std::string, double> g_worst_err;  // worst error / tolerance per kernel and type

simt::Schedule schedule(int k) {
  simt::Schedule s;
  if (k == 1) s.threads = s.blocks = simt::Order::kReverse;
  if (k == 2) {
    s.threads = s.blocks = simt::Order::kRandom;
    s.seed = 20261207;
  }
  return s;
}

template <typename T>
std::vector<T> poisoned(size_t n) {
  std::vector<T> v(std::max<size_t>(n, 1));
  std::memset(static_cast<void*>(v.data()), 0xFF, v.size() * sizeof(T));
  v.resize(n);
  return v;
}

void fail_line(const std::string& what, const std::string& detail) {
  std::printf("FAIL %s: %s\n", what.c_str(), detail.c_str());
}

// Runs fn(out) (which returns the launch status) under each schedule and checks the status,
// the emulator's error count, the outputs' bitwise agreement, and the first against ref.
template <typename T, typename F>
void check(const std::string& kernel, const Case& c, const Ref& ref, F&& fn) {
  const std::string what = kernel + " [" + type_name<T>() + "] " + c.name + " (" +
                           describe(c.s) + ")";
  const size_t n = ref.v.size();
  std::vector<T> outs[3];
  cudaError_t errs[3];
  const uint64_t err0 = simt::stats().total_errors();
  for (int k = 0; k < g_opt.schedules; ++k) {
    simt::set_schedule(schedule(k));
    outs[k] = poisoned<T>(n);
    const auto t0 = std::chrono::steady_clock::now();
    errs[k] = fn(outs[k].data());
    g_time[kernel.substr(0, kernel.find(' '))] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  simt::set_schedule(schedule(0));
  ++g_tot.checks;
  bool ok = true;
  if (errs[0] != cudaSuccess) {
    fail_line(what, std::string("returned ") + cudaGetErrorString(errs[0]));
    ++g_tot.value_fail;
    return;
  }
  const uint64_t emu_errors = simt::stats().total_errors() - err0;
  if (emu_errors) {
    fail_line(what, std::to_string(emu_errors) + " emulator errors (SIMT lines above)");
    ++g_tot.emu_fail;
    ok = false;
  }
  for (int k = 1; k < g_opt.schedules; ++k) {
    if (errs[k] != errs[0] || std::memcmp(outs[k].data(), outs[0].data(), n * sizeof(T))) {
      fail_line(what, "outputs differ between schedules (" + simt::describe(schedule(0)) +
                          ") and (" + simt::describe(schedule(k)) + ")");
      ++g_tot.order_fail;
      ok = false;
      break;
    }
  }
  const double tol = tolerance<T>();
  size_t bad = 0, first = 0;
  double worst = 0;
  for (size_t i = 0; i < n; ++i) {
    const double got = to_f(outs[0][i]);
    const double allowed = tol * (ref.scale[i] + std::fabs(ref.v[i])) + 1e-6;
    const double d = std::fabs(got - ref.v[i]);
    if (!(d <= allowed)) {
      if (bad++ == 0) first = i;
      worst = INFINITY;
    } else {
      worst = std::max(worst, d / allowed);
    }
  }
  double& w = g_worst_err[kernel.substr(0, kernel.find(' ')) + " [" + type_name<T>() + "]"];
  w = std::max(w, worst);
  if (bad) {
    std::ostringstream m;
    m << bad << " of " << n << " wrong, first at " << first << ": got " << to_f(outs[0][first])
      << " want " << ref.v[first];
    fail_line(what, m.str());
    ++g_tot.value_fail;
    ok = false;
  }
  if (ok) ++g_tot.passed;
}

// The 32-bit-index kernels refuse this case (cudaErrorInvalidValue), launching nothing.
void check_refused(const std::string& kernel, const Case& c, cudaError_t got,
                   uint64_t launches_before) {
  ++g_tot.checks;
  if (got == cudaErrorInvalidValue && simt::stats().launches == launches_before) {
    ++g_tot.passed;
    ++g_tot.refusals;
    return;
  }
  fail_line(kernel + " " + c.name + " (" + describe(c.s) + ")",
            std::string("expected a refusal before any launch, got ") + cudaGetErrorString(got));
  ++g_tot.value_fail;
}

bool wanted(const std::string& kernel) {
  return (g_opt.only.empty() || kernel.find(g_opt.only) != std::string::npos) &&
         (g_opt.skip.empty() || kernel.find(g_opt.skip) == std::string::npos);
}

struct Lcg {
  uint64_t state;
  float next(float lo, float hi) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return lo + (hi - lo) * float((state >> 40) & 0xFFFFFF) / float(1 << 24);
  }
};

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
void run_tapsums(const Case& c, const std::vector<T>& hx, const std::vector<T>& hw,
                 const std::vector<T>& hg, Lcg& rng) {
  const AdderConvSizes& s = c.s;
  const size_t nx = hx.size(), nw = hw.size(), ny = hg.size();
  const auto ha = random_vec<T>(nx, rng, -1.f, 1.f);  // input-shaped coefficient a
  const auto hb = random_vec<T>(nw, rng, -1.f, 1.f);  // weight-shaped coefficient b
  const auto X = widen(hx), Wt = widen(hw), G = widen(hg), A = widen(ha), B = widen(hb);
  if (wanted("tapsum_output")) {
    struct V { int fn; bool a, b; };
    for (V v : {V{0, true, true}, V{1, true, true}, V{2, true, true}, V{0, true, false},
                V{1, false, true}}) {
      Ref r(ny);
      for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
        const double coef = ((v.a && xi >= 0) ? A[xi] : 0.0) + (v.b ? B[wi] : 0.0);
        r.add(yi, coef * phi(Wt[wi] - (xi >= 0 ? X[xi] : 0.0), v.fn));
      });
      check<T>("tapsum_output fn" + std::to_string(v.fn) + (v.a ? " a" : "") + (v.b ? " b" : ""),
               c, r, [&](T* out) {
                 return ac::adder_conv2d_tapsum_output<T>(v.a ? ha.data() : nullptr,
                                                          v.b ? hb.data() : nullptr, hx.data(),
                                                          hw.data(), out, v.fn, s, nullptr);
               });
    }
  }
  if (wanted("tapsum_input")) {
    for (int fn = 0; fn < 3; ++fn) {
      Ref r(nx);
      for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
        if (xi >= 0) r.add(xi, G[yi] * phi(Wt[wi] - X[xi], fn));
      });
      check<T>("tapsum_input fn" + std::to_string(fn), c, r, [&](T* out) {
        return ac::adder_conv2d_tapsum_input<T>(hg.data(), hx.data(), hw.data(), out, fn, s,
                                                nullptr);
      });
    }
  }
  if (wanted("tapsum_weight")) {
    // One block of 256 threads per weight element: bounded to keep the run short.
    if (int64_t(nw) > g_opt.tapsum_max_blocks) {
      ++g_tot.skipped;
      return;
    }
    struct V { int fn; bool a; };
    for (V v : {V{0, true}, V{1, true}, V{2, true}, V{0, false}}) {
      Ref r(nw);
      for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
        const double coef = v.a ? (xi >= 0 ? A[xi] : 0.0) : 1.0;
        r.add(wi, G[yi] * coef * phi(Wt[wi] - (xi >= 0 ? X[xi] : 0.0), v.fn));
      });
      check<T>("tapsum_weight fn" + std::to_string(v.fn) + (v.a ? " a" : ""), c, r,
               [&](T* out) {
                 return ac::adder_conv2d_tapsum_weight<T>(hg.data(), v.a ? ha.data() : nullptr,
                                                          hx.data(), hw.data(), out, v.fn, s,
                                                          nullptr);
               });
    }
  }
}

template <typename T>
void run_case(const Case& c, uint64_t seed) {
  const AdderConvSizes& s = c.s;
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

  Ref y(ny), gi(nx), gw(nw);
  std::vector<double> gx(nw, 0.0), gsum(size_t(s.O), 0.0);
  for_each_tap(s, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double xv = xi >= 0 ? X[xi] : 0.0, wv = Wt[wi], gv = G[yi];
    y.add(yi, -std::fabs(xv - wv));
    gw.add(wi, gv * (xv - wv));
    gx[wi] += gv * xv;
    if (xi >= 0) gi.add(xi, gv * std::min(1.0, std::max(-1.0, wv - xv)));
  });
  const int64_t plane = s.OH * s.OW;
  for (size_t yi = 0; yi < ny; ++yi) gsum[(yi / plane) % s.O] += G[yi];

  if (wanted("forward")) {
    check<T>("forward", c, y, [&](T* out) {
      return ac::adder_conv2d_forward<T>(hx.data(), hw.data(), nullptr, nullptr, false, out, s,
                                         nullptr);
    });
    for (int variant = 0; variant < 2; ++variant) {
      const bool with_scale = variant == 0, relu = variant == 0;
      Ref r(ny);
      for (size_t yi = 0; yi < ny; ++yi) {
        const size_t o = (yi / plane) % s.O;
        const double a = with_scale ? hscale[o] : 1.0;
        r.v[yi] = a * y.v[yi] + hshift[o];
        if (relu && r.v[yi] < 0) r.v[yi] = 0;
        r.scale[yi] = std::fabs(a) * y.scale[yi] + std::fabs(hshift[o]);
      }
      check<T>(with_scale ? "forward_fused scale+shift+relu" : "forward_fused shift", c, r,
               [&](T* out) {
                 return ac::adder_conv2d_forward<T>(hx.data(), hw.data(),
                                                    with_scale ? hscale.data() : nullptr,
                                                    hshift.data(), relu, out, s, nullptr);
               });
    }
  }
  if (wanted("grad_input")) {
    check<T>("grad_input", c, gi, [&](T* out) {
      return ac::adder_conv2d_grad_input<T>(hg.data(), hx.data(), hw.data(), out, s, nullptr);
    });
  }
  if (wanted("grad_weight")) {
    const size_t ws_bytes = ac::adder_conv2d_grad_weight_workspace_bytes(s);
    check<T>("grad_weight", c, gw, [&](T* out) {
      auto ws = poisoned<float>(ws_bytes / sizeof(float));
      return ac::adder_conv2d_grad_weight<T>(hg.data(), hx.data(), hw.data(), ws.data(),
                                             ws_bytes, out, s, nullptr);
    });
    std::vector<float> hgx(nw), hgsum(size_t(s.O));
    for (size_t i = 0; i < nw; ++i) hgx[i] = float(gx[i]);
    for (size_t o = 0; o < size_t(s.O); ++o) hgsum[o] = float(gsum[o]);
    check<T>("grad_weight_correction", c, gw, [&](T* out) {
      return ac::adder_conv2d_grad_weight_correction<T>(hgx.data(), hgsum.data(), hw.data(), out,
                                                        s, nullptr);
    });
  }
  run_tapsums<T>(c, hx, hw, hg, rng);
}

// Sizes whose in-image or reduction indices do not fit the 32 bits the tiled kernels keep
// them in must be refused before any launch; no memory is touched (N = 0 or null buffers).
void run_refusals() {
  using addernet::cpu::test::make;
  std::vector<Case> cases = {
      {"cpu_s2^40", from_shape(make(1, 2, 9, 9, 3, 3, 3, int64_t(1) << 40, 1, 1, 1))},
      {"HW>2^31", AdderConvSizes{0, 1, 65536, 65536, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 65536, 65536}},
      {"K>2^31", AdderConvSizes{0, int64_t(1) << 29, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
      {"R>2^31", AdderConvSizes{0, 1, 1, 1, int64_t(1) << 29, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
  };
  float dummy[1] = {0};
  for (const Case& c : cases) {
    const uint64_t before = simt::stats().launches;
    check_refused("forward", c, ac::adder_conv2d_forward<float>(dummy, dummy, nullptr, nullptr,
                                                                false, dummy, c.s, nullptr),
                  before);
    check_refused("grad_input", c, ac::adder_conv2d_grad_input<float>(dummy, dummy, dummy, dummy,
                                                                      c.s, nullptr),
                  before);
    check_refused("grad_weight", c, ac::adder_conv2d_grad_weight<float>(
                                        dummy, dummy, dummy, dummy, sizeof dummy, dummy, c.s,
                                        nullptr),
                  before);
    check_refused("grad_weight_correction", c,
                  ac::adder_conv2d_grad_weight_correction<float>(dummy, dummy, dummy, dummy, c.s,
                                                                 nullptr),
                  before);
  }
}

// With no batch, the weight gradient is an empty sum: zeros (as test_cuda_kernels.cu checks).
void run_empty_batch() {
  const Case c{"empty_batch", AdderConvSizes{0, 8, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 5, 5}};
  const size_t nw = 8 * 8 * 9;
  const std::vector<float> w(nw, 0.5f);
  const size_t ws_bytes = ac::adder_conv2d_grad_weight_workspace_bytes(c.s);
  check<float>("grad_weight", c, Ref(nw), [&](float* out) {
    auto ws = poisoned<float>(ws_bytes / sizeof(float));
    return ac::adder_conv2d_grad_weight<float>(nullptr, nullptr, w.data(), ws.data(), ws_bytes,
                                               out, c.s, nullptr);
  });
}

// The exit status of a --expect run: every expected finding happened.
int expected_findings(const simt::Stats& st) {
  auto errors = [&](simt::Error e) { return st.errors[int(e)]; };
  int missing = 0;
  for (const std::string& e : g_opt.expect) {
    uint64_t n;
    if (e == "value") n = g_tot.value_fail;
    else if (e == "order") n = g_tot.order_fail;
    else if (e == "race") n = errors(simt::Error::kRace);
    else if (e == "unwritten") n = errors(simt::Error::kUnwrittenShared);
    else if (e == "divergence") n = errors(simt::Error::kBarrierDivergence);
    else if (e == "exit") n = errors(simt::Error::kBarrierAfterExit);
    else if (e == "launch") n = errors(simt::Error::kInvalidLaunch);
    else if (e == "agree") n = g_tot.order_fail == 0 && g_tot.checks > 0;
    else if (e == "correct") n = g_tot.value_fail == 0 && g_tot.checks > 0;
    else {
      std::fprintf(stderr, "unknown --expect kind %s\n", e.c_str());
      return 2;
    }
    std::printf("expected %-10s %s (%llu)\n", e.c_str(), n ? "yes" : "NO",
                (unsigned long long)n);
    if (!n) ++missing;
  }
  return missing ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--types") g_opt.types = value();
    else if (a == "--only") g_opt.only = value();
    else if (a == "--skip") g_opt.skip = value();
    else if (a == "--quick") g_opt.quick = true;
    else if (a == "--schedules") g_opt.schedules = std::max(1, std::min(3, std::atoi(value().c_str())));
    else if (a == "--tapsum-max-blocks") g_opt.tapsum_max_blocks = std::atoll(value().c_str());
    else if (a == "--expect") {
      std::stringstream ss(value());
      for (std::string k; std::getline(ss, k, ',');) g_opt.expect.push_back(k);
    } else {
      std::fprintf(stderr, "unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
#ifdef EMU_FLOAT_ONLY
  g_opt.types = "f";
#endif
  const std::vector<Case> cases = g_opt.quick ? quick_cases() : all_cases();
  uint64_t seed = 1;
  for (const Case& c : cases) {
    if (g_opt.types.find('f') != std::string::npos) run_case<float>(c, seed++);
#ifndef EMU_FLOAT_ONLY
    if (g_opt.types.find('h') != std::string::npos) run_case<__half>(c, seed++);
    if (g_opt.types.find('b') != std::string::npos) run_case<__nv_bfloat16>(c, seed++);
#endif
  }
  if (wanted("grad_weight")) run_empty_batch();
  // With --skip the run is a shard of the full set (CTest runs two at once): it keeps the refusals.
  if (!g_opt.quick && g_opt.only.empty()) run_refusals();
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  std::printf("\nworst error / tolerance per kernel and type:\n");
  for (const auto& [k, v] : g_worst_err) std::printf("  %-36s %.3g\n", k.c_str(), v);
  std::printf("seconds per kernel (all schedules):");
  for (const auto& [k, v] : g_time) std::printf(" %s %.2f", k.c_str(), v);
  const simt::Stats& st = simt::stats();
  std::printf("\nemulated: %llu launches, %llu blocks, %llu threads, %llu resumes, %llu barriers,"
              " %llu shared accesses checked\n",
              (unsigned long long)st.launches, (unsigned long long)st.blocks,
              (unsigned long long)st.threads, (unsigned long long)st.resumes,
              (unsigned long long)st.barriers, (unsigned long long)st.shared_accesses);
  std::printf("emulator errors:");
  for (int e = 0; e < int(simt::Error::kCount); ++e) {
    std::printf(" %s %llu%s", simt::error_name(simt::Error(e)), (unsigned long long)st.errors[e],
                e + 1 < int(simt::Error::kCount) ? "," : "\n");
  }
  std::printf("%zu shapes x %zu types, %d schedules: %d checks, %d passed (%d refusals), "
              "%d wrong values, %d schedule-dependent, %d with emulator errors; %d tapsum_weight "
              "cases skipped (over %lld blocks); %.1f s\n",
              cases.size(), g_opt.types.size(), g_opt.schedules, g_tot.checks, g_tot.passed,
              g_tot.refusals, g_tot.value_fail, g_tot.order_fail, g_tot.emu_fail, g_tot.skipped,
              (long long)g_opt.tapsum_max_blocks, total);
  if (!g_opt.expect.empty()) return expected_findings(st);
  return g_tot.passed == g_tot.checks && st.total_errors() == 0 ? 0 : 1;
}
