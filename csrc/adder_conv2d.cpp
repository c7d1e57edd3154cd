// Operator schemas for the adder convolution, shared by every device.
// The CPU and CUDA implementations live in cpu/ and cuda/ under the same op names,
// so the dispatcher picks one by the tensors' device (as torchvision's csrc/ops does).
#include <Python.h>
#include <torch/library.h>

#include <string>

namespace {
std::string build_info() {
  std::string s = "compiler=";
#if defined(__clang__)
  s += "clang-" __clang_version__;
#elif defined(__GNUC__)
  s += "gcc-" __VERSION__;
#endif
#if defined(ADDERNET_WITH_CUDA) && ADDERNET_WITH_CUDA
  s += " cuda=yes";
#else
  s += " cuda=no";
#endif
#if defined(ADDERNET_MARCH_NATIVE) && ADDERNET_MARCH_NATIVE
  s += " march=native";
#else
  s += " march=portable(runtime ISA dispatch)";
#endif
#if defined(ADDERNET_OPENMP) && ADDERNET_OPENMP
  s += " openmp=yes";
#else
  s += " openmp=no";
#endif
  return s;
}
}  // namespace

// Importing addernet._C runs the static registrations below; the module itself is empty.
extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(addernet, m) {
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
  // Not a tensor op: the flags this extension was compiled with, for `addernet info`.
  m.def("_build_info() -> str", &build_info);
}
