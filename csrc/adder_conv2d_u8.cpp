// Operator schema of the uint8 adder convolution (inference only). Its CPU binding is
// csrc/cpu/adder_conv2d_u8_binding.cpp; its raw kernels are csrc/kernels/cpu/adder_conv2d_u8*.
#include <torch/library.h>

#include "cpu/info.h"

TORCH_LIBRARY_FRAGMENT(addernet, m) {
  // acc = sum |qx - qw| over each patch, padded taps holding zero_point (so that they add |w|).
  // Output: int32 -acc (no epilogue); float32 relu?(-acc * scale + shift); or, with out_scale,
  // that value requantised to uint8 (round(v * (1/out_scale)) + out_zero_point, clamped) for the
  // next quantised layer. A float32 input is quantised first with input_scale and zero_point
  // (round half to even, clamped to [0, 255]).
  m.def(
      "adder_conv2d_u8(Tensor input, Tensor weight, int zero_point, Tensor? scale, Tensor? shift, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, bool relu=False, "
      "float? out_scale=None, int out_zero_point=0, float? input_scale=None) -> Tensor");
  // Not a tensor op: which kernel set and vector width the op runs here.
  m.def("_u8_info() -> str", &addernet::u8_info);
}
