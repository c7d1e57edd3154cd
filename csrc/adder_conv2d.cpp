// Operator schemas of the float adder convolution: forward, backward, fused epilogue and the tap
// sums, shared by every device. The bindings register their implementations under the same op
// names (csrc/cpu/adder_conv2d*_binding.cpp, csrc/cuda/adder_conv2d*_binding.cu), so the dispatcher
// picks one by the tensors' device, as torchvision's csrc/ops does. One schema file per op:
// the uint8 op's is csrc/adder_conv2d_u8.cpp; the library itself is opened in csrc/extension.cpp.
#include <torch/library.h>

#include "cpu/info.h"

TORCH_LIBRARY_FRAGMENT(addernet, m) {
  // Y = -sum |X - W| over each patch; bias is added outside the op so autograd handles it.
  m.def(
      "adder_conv2d(Tensor input, Tensor weight, int[2] stride, int[2] padding, "
      "int[2] dilation, int groups) -> Tensor");
  // The paper's gradients: grad_input = sum G*clamp(W-X,-1,1), grad_weight = sum G*(X-W).
  // A masked-out gradient comes back as an empty tensor (shape [0]), never undefined,
  // so that the fake implementation can describe it.
  m.def(
      "adder_conv2d_backward(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, bool[2] output_mask) -> (Tensor, Tensor)");
  // Inference only: y = relu?(scale * adder(x, w) + shift), a BatchNorm folded into the epilogue.
  m.def(
      "adder_conv2d_fused(Tensor input, Tensor weight, Tensor? scale, Tensor? shift, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, bool relu) -> Tensor");
  // The tap sums that second-order gradients and grad_mode="exact" are built from
  // (addernet/backends/grad2.py). With D = W[o,k] - Xcol[n,k,p] at every tap (Xcol = 0 at padded
  // taps) and phi = fn: "hardtanh" clamp(D,-1,1), "sign" sign(D), "mask" 1[|D| < 1]:
  //   output: sum_k (Acol + B[o,k]) * phi(D), shaped like the output (a: like the input, zero at
  //           padded taps; b: like the weight; either may be None);
  //   input:  sum over the taps reading each pixel of G * phi(D), shaped like the input;
  //   weight: sum_{n,p} G * Acol * phi(D), shaped like the weight (a None: 1 at every tap).
  m.def(
      "adder_conv2d_tapsum_output(Tensor? a, Tensor? b, Tensor input, Tensor weight, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, str fn) -> Tensor");
  m.def(
      "adder_conv2d_tapsum_input(Tensor grad_output, Tensor input, Tensor weight, int[2] stride, "
      "int[2] padding, int[2] dilation, int groups, str fn) -> Tensor");
  m.def(
      "adder_conv2d_tapsum_weight(Tensor grad_output, Tensor? a, Tensor input, Tensor weight, "
      "int[2] stride, int[2] padding, int[2] dilation, int groups, str fn) -> Tensor");
  // Not tensor ops: which kernel set the CPU path runs (for `addernet info`), and which patch
  // algorithm it picks for a layer (for the benchmark tables).
  m.def("_cpu_info() -> str", &addernet::cpu_info);
  m.def("_cpu_algorithms(int[] input, int[] weight, int[] stride, int[] padding, int[] dilation, "
        "int groups) -> str",
        &addernet::cpu_algorithms);
}
