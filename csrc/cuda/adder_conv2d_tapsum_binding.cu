// CUDA binding of the three tap sums (csrc/kernels/cuda/adder_conv2d_tapsum.cuh), under the same
// op names as the CPU binding (csrc/cpu/adder_conv2d_tapsum_binding.cpp).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../kernels/cuda/adder_conv2d_tapsum.cuh"
#include "../tapsum_common.h"

namespace addernet {
namespace {

using cuda::AdderConvSizes;

AdderConvSizes sizes_of(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, const char* name) {
  const ConvGeometry g = check_geometry(input, weight, stride, padding, dilation, groups, name);
  const at::ScalarType t = input.scalar_type();
  TORCH_CHECK(t == at::kFloat || t == at::kHalf || t == at::kBFloat16, name,
              ": CUDA supports float32, float16 and bfloat16, got ", t);
  return AdderConvSizes{g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                        g.DH, g.DW, g.G, g.OH, g.OW};
}

template <typename F>
void dispatch(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat: return f(float{});
    case at::kHalf: return f(__half{});
    default: return f(__nv_bfloat16{});
  }
}

template <typename T> const T* cptr(const at::Tensor& t) { return reinterpret_cast<const T*>(t.data_ptr()); }
template <typename T> const T* optr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? cptr<T>(*t) : nullptr;
}
template <typename T> T* mptr(at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

c10::optional<at::Tensor> contiguous(const c10::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return c10::nullopt;
  return t->contiguous();
}

at::Tensor tapsum_output_cuda(const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                              const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                              c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_output";
  const AdderConvSizes s = sizes_of(input, weight, stride, padding, dilation, groups, name);
  const int code = tap_fn_code(fn, name);
  check_like(a, input, "a", "the input", name);
  check_like(b, weight, "b", "the weight", name);
  c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const c10::optional<at::Tensor> ac = contiguous(a), bc = contiguous(b);
  at::Tensor out = at::empty({s.N, s.O, s.OH, s.OW}, input.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    C10_CUDA_CHECK(cuda::adder_conv2d_tapsum_output<T>(optr<T>(ac), optr<T>(bc), cptr<T>(x), cptr<T>(w),
                                                       mptr<T>(out), code, s, stream));
  });
  return out;
}

at::Tensor tapsum_input_cuda(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                             at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                             int64_t groups, c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_input";
  const AdderConvSizes s = sizes_of(input, weight, stride, padding, dilation, groups, name);
  check_grad_output(grad_output, check_geometry(input, weight, stride, padding, dilation, groups, name),
                    input, name);
  const int code = tap_fn_code(fn, name);
  c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), g = grad_output.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    C10_CUDA_CHECK(cuda::adder_conv2d_tapsum_input<T>(cptr<T>(g), cptr<T>(x), cptr<T>(w), mptr<T>(out), code,
                                                      s, stream));
  });
  return out;
}

at::Tensor tapsum_weight_cuda(const at::Tensor& grad_output, const c10::optional<at::Tensor>& a,
                              const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                              at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                              c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_weight";
  const AdderConvSizes s = sizes_of(input, weight, stride, padding, dilation, groups, name);
  check_grad_output(grad_output, check_geometry(input, weight, stride, padding, dilation, groups, name),
                    input, name);
  const int code = tap_fn_code(fn, name);
  check_like(a, input, "a", "the input", name);
  c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), g = grad_output.contiguous();
  const c10::optional<at::Tensor> ac = contiguous(a);
  at::Tensor out = at::empty(w.sizes(), w.options());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch(input.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    C10_CUDA_CHECK(cuda::adder_conv2d_tapsum_weight<T>(cptr<T>(g), optr<T>(ac), cptr<T>(x), cptr<T>(w),
                                                       mptr<T>(out), code, s, stream));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(addernet, CUDA, m) {
  m.impl("adder_conv2d_tapsum_output", &tapsum_output_cuda);
  m.impl("adder_conv2d_tapsum_input", &tapsum_input_cuda);
  m.impl("adder_conv2d_tapsum_weight", &tapsum_weight_cuda);
}

}  // namespace addernet
