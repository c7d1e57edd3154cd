// Run-time choice of the kernel set: the widest ISA this CPU supports, unless ADDERNET_CPU_ISA
// forces one (the tests force each in turn).
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

#include "isa_kernels.h"

namespace addernet {
namespace cpu {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "scalar";
  }
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
#ifdef ADDERNET_X86
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
#endif
    default: return false;
  }
}

Isa best_isa() {
  static const Isa best = isa_supported(Isa::avx512) ? Isa::avx512
                          : isa_supported(Isa::avx2) ? Isa::avx2
                                                     : Isa::scalar;
  return best;
}

bool isa_from_env(Isa* out, const char** error) {
  const char* env = std::getenv("ADDERNET_CPU_ISA");
  if (env == nullptr || *env == '\0') {
    *out = best_isa();
    return true;
  }
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512}) {
    if (std::strcmp(env, isa_name(isa)) == 0) {
      if (!isa_supported(isa)) {
        *error = "ADDERNET_CPU_ISA names an instruction set this CPU (or build) lacks";
        return false;
      }
      *out = isa;
      return true;
    }
  }
  *error = "ADDERNET_CPU_ISA must be one of scalar, avx2, avx512";
  return false;
}

const char* algo_name(Algo algo) {
  switch (algo) {
    case Algo::packed: return "packed";
    case Algo::direct: return "direct";
    default: return "automatic";
  }
}

bool algo_from_env(Algo* out, const char** error) {
  const char* env = std::getenv("ADDERNET_CPU_ALGO");
  *out = Algo::automatic;
  if (env == nullptr || *env == '\0') return true;
  for (Algo algo : {Algo::automatic, Algo::packed, Algo::direct})
    if (std::strcmp(env, algo_name(algo)) == 0) {
      *out = algo;
      return true;
    }
  *error = "ADDERNET_CPU_ALGO must be one of automatic, packed, direct";
  return false;
}

const char* tap_name(Tap tap) {
  switch (tap) {
    case Tap::exact: return "exact";
    case Tap::identity256: return "identity256";
    case Tap::identity512: return "identity512";
    default: return "identity";
  }
}

bool tap_from_env(Tap* out, const char** error) {
  const char* env = std::getenv("ADDERNET_CPU_TAP");
  *out = Tap::identity;
  if (env == nullptr || *env == '\0') return true;
  for (Tap tap : {Tap::identity, Tap::exact, Tap::identity256, Tap::identity512})
    if (std::strcmp(env, tap_name(tap)) == 0) {
      *out = tap;
      return true;
    }
  *error = "ADDERNET_CPU_TAP must be one of identity, exact, identity256, identity512";
  return false;
}

// AMD family 0x19 (Zen 3 and Zen 4; of those only Zen 4 has AVX-512) executes a 512-bit operation
// as two 256-bit halves: measured there, the identity tap runs 1.4x faster in ymm than in zmm
// (benchmarks/RESULTS.md section 8, 5.4). Other AVX-512 cores (Intel's, AMD Zen 5) have 512-bit
// pipes, where the wider vectors should win; not measured here.
bool prefer_256bit() {
#ifdef ADDERNET_X86
  static const bool zen4 = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    const bool amd = b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u;  // "AuthenticAMD"
    if (!amd || !__get_cpuid(1, &a, &b, &c, &d)) return false;
    const unsigned base = (a >> 8) & 0xf, family = base == 0xf ? base + ((a >> 20) & 0xff) : base;
    return family == 0x19;
  }();
  return zen4;
#else
  return true;
#endif
}

// Below this many taps per output, `identity` runs the exact tap: the identity's per-output
// finish (sum x + sum w - 2 acc, the finiteness check) and per-position sum x cost about what its
// cheaper taps save. Measured (1 thread): a 16-channel 1x1 layer ran 1.0-1.45x slower with the
// identity, 32- and 120-channel ones 1.0-1.15x faster.
constexpr int64_t kIdentityMinTaps = 32;

// fwd_run's tap: 0 exact, 1 the narrow identity (256-bit in the AVX-512 build), 2 the full-width
// one. identity256/identity512 force the identity whatever K is (the tests use them).
static int fwd_tap(const ConvShape& s, const Options& o) {
  switch (o.tap) {
    case Tap::exact: return 0;
    case Tap::identity256: return 1;
    case Tap::identity512: return 2;
    default: return s.K() < kIdentityMinTaps ? 0 : prefer_256bit() ? 1 : 2;
  }
}

#ifdef ADDERNET_X86
#define ADDERNET_DISPATCH(isa, fn, ...)                              \
  switch (isa) {                                                     \
    case Isa::avx512: return avx512::fn<T>(__VA_ARGS__);             \
    case Isa::avx2: return avx2::fn<T>(__VA_ARGS__);                 \
    default: return portable::fn<T>(__VA_ARGS__);                    \
  }
#else
#define ADDERNET_DISPATCH(isa, fn, ...) return portable::fn<T>(__VA_ARGS__);
#endif

template <typename T>
int64_t Forward<T>::pack_size(const ConvShape& s, const Options& o) {
  ADDERNET_DISPATCH(o.isa, fwd_pack_size, s)
}
template <typename T>
void Forward<T>::pack(const ConvShape& s, const T* w, void* wp, const Options& o) {
  ADDERNET_DISPATCH(o.isa, fwd_pack, s, w, wp)
}
template <typename T>
int64_t Forward<T>::work_items(const ConvShape& s, const Options& o) {
  ADDERNET_DISPATCH(o.isa, fwd_items, s, o.algo, o.threads)
}
template <typename T>
void Forward<T>::run(const ConvShape& s, const T* x, const void* wp, const T* scale, const T* shift,
                     bool relu, T* y, int64_t begin, int64_t end, const Options& o) {
  ADDERNET_DISPATCH(o.isa, fwd_run, s, x, wp, scale, shift, relu, y, begin, end, o.algo, o.threads,
                    fwd_tap(s, o))
}
template <typename T>
Algo Forward<T>::choose(const ConvShape& s, const Options& o) { ADDERNET_DISPATCH(o.isa, fwd_algo, s, o.algo) }

template <typename T>
int64_t InputGrad<T>::pack_size(const ConvShape& s, const Options& o) {
  ADDERNET_DISPATCH(o.isa, bwdx_pack_size, s, o.algo)
}
template <typename T>
void InputGrad<T>::pack(const ConvShape& s, const T* w, void* wp, const Options& o) {
  ADDERNET_DISPATCH(o.isa, bwdx_pack, s, w, wp, o.algo)
}
template <typename T>
int64_t InputGrad<T>::work_items(const ConvShape& s, const Options& o) {
  ADDERNET_DISPATCH(o.isa, bwdx_items, s, o.algo, o.threads)
}
template <typename T>
void InputGrad<T>::run(const ConvShape& s, const T* x, const void* wp, const T* gout, T* gin,
                       int64_t begin, int64_t end, const Options& o) {
  ADDERNET_DISPATCH(o.isa, bwdx_run, s, x, wp, gout, gin, begin, end, o.algo, o.threads)
}
template <typename T>
Algo InputGrad<T>::choose(const ConvShape& s, const Options& o) { ADDERNET_DISPATCH(o.isa, bwdx_algo, s, o.algo) }

template struct Forward<float>;
template struct Forward<double>;
template struct Forward<bf16>;
template struct InputGrad<float>;
template struct InputGrad<double>;
template struct InputGrad<bf16>;

}  // namespace cpu
}  // namespace addernet
