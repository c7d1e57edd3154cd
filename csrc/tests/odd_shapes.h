// The odd-shape grid both native kernel tests (float and uint8) run: every tile edge, stride,
// padding, dilation, groups, non-square kernels, batch 0, one position per image. Each test
// appends the shapes only its kernels need.
#pragma once

#include <cstdint>
#include <vector>

#include "../kernels/cpu/adder_conv2d_cpu.h"

namespace addernet::cpu::test {

// N, C, HxW, O, KHxKW, stride S (and S+1 across when the kernel is not square), padding P,
// dilation D, groups G.
inline ConvShape make(int64_t N, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW,
                      int64_t S, int64_t P, int64_t D, int64_t G) {
  ConvShape s{N, C, H, W, O, KH, KW, S, S + (KH != KW ? 1 : 0), P, P, D, D, G, 0, 0};
  s.OH = (H + 2 * s.PH - s.DH * (KH - 1) - 1) / s.SH + 1;
  s.OW = (W + 2 * s.PW - s.DW * (KW - 1) - 1) / s.SW + 1;
  return s;
}

inline std::vector<ConvShape> odd_shapes() {
  return {
      make(2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1),    make(1, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1),
      make(3, 4, 11, 5, 13, 2, 3, 2, 0, 1, 1),  make(2, 6, 9, 9, 6, 3, 3, 1, 2, 2, 3),
      make(1, 8, 5, 5, 8, 1, 1, 2, 0, 1, 2),    make(2, 70, 6, 6, 7, 3, 3, 1, 1, 1, 1),
      make(1, 5, 17, 19, 29, 5, 3, 1, 2, 1, 1), make(0, 3, 5, 5, 4, 3, 3, 1, 1, 1, 1),
      make(1, 4, 4, 4, 4, 3, 3, 1, 1, 1, 4),
      // one position per image (LeNet's 4x4 adder), and tiles that cross image boundaries
      make(37, 6, 4, 4, 10, 4, 4, 1, 0, 1, 1),  make(5, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1),
      make(3, 2, 9, 10, 3, 3, 2, 3, 2, 1, 1),
      // a 'valid' 5x5 layer (LeNet's 6->16), and rows wider than a direct tile
      make(3, 6, 14, 14, 16, 5, 5, 1, 0, 1, 1), make(1, 2, 3, 600, 3, 1, 3, 1, 1, 1, 1),
      // enough channels to split into chunks at 64 threads, odd counts leaving short last chunks
      make(1, 130, 5, 5, 197, 3, 3, 1, 1, 1, 1), make(2, 67, 4, 6, 131, 1, 1, 1, 0, 1, 1),
  };
}

}  // namespace addernet::cpu::test
