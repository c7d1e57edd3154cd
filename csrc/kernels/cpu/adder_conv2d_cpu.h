// Raw-pointer CPU kernels for the adder convolution. No torch headers: the C++ compiler and the
// native unit tests build them on their own, and a thin binding (csrc/cpu/) registers them.
//
// Layouts: input NCHW, weight (O, C/groups, KH, KW), output NCHW, all contiguous.
// The caller parallelises: each kernel runs a range [begin, end) of independent work items,
// so the binding can hand ranges to at::parallel_for and the native tests can run them serially.
#pragma once

#include <cstddef>
#include <cstdint>

namespace addernet {
namespace cpu {

struct ConvShape {
  int64_t N, C, H, W;       // input
  int64_t O, KH, KW;        // weight (O, C/G, KH, KW)
  int64_t SH, SW, PH, PW, DH, DW, G;
  int64_t OH, OW;           // output spatial size
  int64_t Cg() const { return C / G; }
  int64_t Og() const { return O / G; }
  int64_t K() const { return Cg() * KH * KW; }   // reduction length of one output
  int64_t L() const { return OH * OW; }          // output positions per image
};

// bfloat16 as raw bits, so that the kernels need no framework type.
struct bf16 {
  uint16_t bits;
};

enum class Isa { scalar = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool isa_supported(Isa isa);         // by this CPU, and compiled in
Isa best_isa();
// ADDERNET_CPU_ISA=scalar|avx2|avx512 forces a path (tests use it); unset means best_isa().
// Returns false and leaves `out` alone when the variable names an unknown or unsupported ISA.
bool isa_from_env(Isa* out, const char** error);

// How the kernels reach the patches. `packed` copies each tile of patches into GEMM panels
// (im2col on the fly, positions flattened over images); `direct` stages each tile's input rows once
// per kernel column and reads patches in place. `automatic` picks per layer shape.
// ADDERNET_CPU_ALGO=packed|direct forces one (the tests force each in turn).
enum class Algo { automatic = 0, packed = 1, direct = 2 };
const char* algo_name(Algo algo);
bool algo_from_env(Algo* out, const char** error);

// The float32 forward's tap. `identity` (the default) evaluates sum |x - w| as
// sum x + sum w - 2 sum min(x, w): a min and an FMA a tap instead of a subtraction, a mask and an
// add, so it runs at a convolution's FMA rate. Equal in exact arithmetic; its rounding error is a
// few ulps of sum(|x| + |w|) where the exact tap's is a few ulps of sum |x - w| (docs/numerics.md).
// A tile whose sums are not finite (an inf or NaN input, or an overflow) is recomputed with the
// exact tap, so non-finite inputs give what |x - w| gives. `exact` forces the exact tap everywhere.
// float64 always runs the exact tap. ADDERNET_CPU_TAP=identity|exact|identity256|identity512
// chooses. `identity` runs the exact tap where an output has fewer than 32 taps (too few to repay
// the identity's per-output work). The AVX-512 kernels have the identity at two widths: `identity`
// takes 256-bit vectors (with AVX-512VL's 32 registers) on AMD Zen 4, whose 512-bit operations
// issue as two 256-bit halves, and 512-bit ones elsewhere. identity256/identity512 force the
// identity at every K, at that width in the AVX-512 kernels (other ISAs have one width).
enum class Tap { identity = 0, exact = 1, identity256 = 2, identity512 = 3 };
const char* tap_name(Tap tap);
bool tap_from_env(Tap* out, const char** error);
// The identity width `identity` means on this CPU: true for 256-bit.
bool prefer_256bit();

// How a call runs: the instruction set, the patch algorithm, and the caller's thread count. Work
// items split a layer over images and tiles of positions; when those alone would leave threads
// idle (small batches of small maps), they split output channels too.
struct Options {
  Isa isa = Isa::scalar;
  Algo algo = Algo::automatic;
  int64_t threads = 1;
  Tap tap = Tap::identity;
};

// Forward: y = epilogue(-sum |x - w|), epilogue = relu?(scale[o] * v + shift[o]), either optional.
// Weights are packed once per call into `wpack` (pack_size elements of the compute type: float
// for float and bf16 inputs, double for double), with each filter's sum of weights after them.
template <typename T>
struct Forward {
  static int64_t pack_size(const ConvShape& s, const Options& opt);
  static void pack(const ConvShape& s, const T* w, void* wpack, const Options& opt);
  static int64_t work_items(const ConvShape& s, const Options& opt);
  static void run(const ConvShape& s, const T* x, const void* wpack, const T* scale, const T* shift,
                  bool relu, T* y, int64_t begin, int64_t end, const Options& opt);
  // The algorithm `automatic` resolves to for this shape.
  static Algo choose(const ConvShape& s, const Options& opt);
};

// Input gradient: gx = sum_o G * clamp(W - X, -1, 1), summed over every patch a pixel is in.
// Each work item owns a disjoint block of (image, channels) of gx, which it fills.
template <typename T>
struct InputGrad {
  static int64_t pack_size(const ConvShape& s, const Options& opt);
  static void pack(const ConvShape& s, const T* w, void* wpack, const Options& opt);
  static int64_t work_items(const ConvShape& s, const Options& opt);
  static void run(const ConvShape& s, const T* x, const void* wpack, const T* grad_out, T* grad_in,
                  int64_t begin, int64_t end, const Options& opt);
  // The algorithm this shape runs: `direct` needs stride 1, so strided layers always pack.
  static Algo choose(const ConvShape& s, const Options& opt);
};

}  // namespace cpu
}  // namespace addernet
