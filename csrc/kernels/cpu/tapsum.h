// Raw-pointer CPU kernels of the three tap sums that the adder op's second-order gradients and
// its "exact" gradients are built from (addernet/backends/grad2.py states the formulas). With
// D = W[o,k] - Xcol[n,k,p] at every tap (Xcol = 0 at padded taps) and phi one of TapFn:
//   output: out[n,o,p]  = sum_k (Acol[n,k,p] + B[o,k]) * phi(D)       (A zero at padded taps)
//   input:  out[pixel]  = sum over the taps (o,p) reading the pixel of G[n,o,p] * phi(D)
//   weight: out[o,k]    = sum_{n,p} G[n,o,p] * Acol[n,k,p] * phi(D)    (no A: 1 at every tap)
// They reuse the forward/input-gradient tiling of adder_conv2d_impl.inc (im2col panels of NR
// positions flattened over images, register-tiled micro-kernels). float and double only: the
// binding runs bfloat16 through float.
#pragma once

#include "adder_conv2d_cpu.h"

namespace addernet {
namespace cpu {

enum class TapFn { hardtanh = 0, sign = 1, mask = 2 };

template <typename T>
struct TapSums {
  static int64_t output_items(const ConvShape& s, const Options& opt);
  static void output(const ConvShape& s, const T* a, const T* b, const T* x, const T* w, T* out, TapFn fn,
                     int64_t begin, int64_t end, const Options& opt);
  // The input sum reads W packed as the input gradient's packed path packs it.
  static int64_t input_pack_size(const ConvShape& s, const Options& opt);
  static void input_pack(const ConvShape& s, const T* w, T* wpack, const Options& opt);
  static int64_t input_items(const ConvShape& s, const Options& opt);
  static void input(const ConvShape& s, const T* g, const T* x, const T* wpack, T* out, TapFn fn,
                    int64_t begin, int64_t end, const Options& opt);
  // The weight sum splits positions into weight_chunks(s) chunks; item (chunk, group) writes its
  // group's rows of partial[chunk] (O x K), which the caller sums over chunks. Where a layer's one
  // patch is its whole input (dense), there is one chunk and items split output channels.
  static int64_t weight_chunks(const ConvShape& s, const Options& opt);
  static int64_t weight_items(const ConvShape& s, const Options& opt);
  static void weight(const ConvShape& s, const T* g, const T* a, const T* x, const T* w, T* partial,
                     TapFn fn, int64_t begin, int64_t end, const Options& opt);
};

}  // namespace cpu
}  // namespace addernet
