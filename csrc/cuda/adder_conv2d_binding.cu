// CUDA binding: checks arguments, makes tensors contiguous NCHW and hands raw pointers to the
// kernels in csrc/kernels/cuda on the current stream. The weight gradient comes either from
// our own kernel or from cuDNN's convolution weight gradient minus W * sum(G)
// (ADDERNET_CUDA_WGRAD=kernel|cudnn, read at every call so a benchmark can switch).
// The stream comes from c10/cuda rather than ATen/cuda/CUDAContext.h, which drags in the
// cuBLAS/cuSPARSE headers that a bare CUDA toolkit may lack.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

#include "../adder_conv2d_common.h"
#include "../kernels/cuda/adder_conv2d_cuda.cuh"

namespace addernet {
namespace {

using cuda::AdderConvSizes;

// Shape checks are shared with the CPU binding (same messages on every device); what is
// CUDA-specific is the dtype set.
AdderConvSizes check_args(const at::Tensor& input, const at::Tensor& weight,
                          at::IntArrayRef stride, at::IntArrayRef padding,
                          at::IntArrayRef dilation, int64_t groups, const char* name) {
  const ConvGeometry g = check_geometry(input, weight, stride, padding, dilation, groups, name);
  // A window longer than the padded input can still round to one output row under a stride
  // (e.g. (2 - 3) / 2 + 1 == 1 in C++); F.conv2d refuses it, and so do we.
  TORCH_CHECK(g.H + 2 * g.PH >= g.DH * (g.KH - 1) + 1 && g.W + 2 * g.PW >= g.DW * (g.KW - 1) + 1,
              name, ": the (dilated) kernel of weight ", weight.sizes(),
              " is larger than the padded input ", input.sizes(), " with padding ", padding,
              " and dilation ", dilation);
  TORCH_CHECK(input.scalar_type() != at::kDouble, name,
              ": float64 is supported only on CPU; on CUDA use float32, float16 or bfloat16 "
              "(input ", input.sizes(), " on ", input.device(), ")");
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kHalf ||
                  input.scalar_type() == at::kBFloat16,
              name, ": CUDA supports float32, float16 and bfloat16, got ", input.scalar_type());
  return AdderConvSizes{g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                        g.DH, g.DW, g.G, g.OH, g.OW};
}

// The kernels read the folded BatchNorm terms as float whatever the activation dtype.
const float* epilogue_ptr(const c10::optional<at::Tensor>& t, at::Tensor& holder) {
  if (!t.has_value() || !t->defined()) return nullptr;
  holder = t->to(at::kFloat).contiguous();
  return holder.data_ptr<float>();
}

template <typename T>
struct Tag {
  using type = T;
};

template <typename F>
void dispatch_cuda_dtype(at::ScalarType dtype, F&& f) {
  switch (dtype) {
    case at::kFloat: return f(Tag<float>{});
    case at::kHalf: return f(Tag<__half>{});
    case at::kBFloat16: return f(Tag<__nv_bfloat16>{});
    default: TORCH_CHECK(false, "adder_conv2d (CUDA): unsupported dtype ", dtype);
  }
}

template <typename T>
const T* cptr(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.data_ptr());
}
template <typename T>
T* mptr(at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

at::Tensor forward_impl(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& scale,
                        const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                        at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        bool relu, const char* name) {
  const AdderConvSizes s = check_args(input, weight, stride, padding, dilation, groups, name);
  c10::cuda::CUDAGuard guard(input.device());
  check_epilogue(scale, s.O, input, "scale", name);
  check_epilogue(shift, s.O, input, "shift", name);
  at::Tensor scale_f, shift_f;
  const float* sc = epilogue_ptr(scale, scale_f);
  const float* sf = epilogue_ptr(shift, shift_f);
  at::Tensor y = at::empty({s.N, s.C == 0 ? 0 : s.O, s.OH, s.OW}, input.options());  // as conv2d
  if (y.numel() == 0) return y;
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  dispatch_cuda_dtype(input.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    C10_CUDA_CHECK(cuda::adder_conv2d_forward<T>(cptr<T>(x), cptr<T>(w), sc, sf, relu,
                                                 mptr<T>(y), s, stream));
  });
  return y;
}

at::Tensor adder_conv2d_cuda(const at::Tensor& input, const at::Tensor& weight,
                             at::IntArrayRef stride, at::IntArrayRef padding,
                             at::IntArrayRef dilation, int64_t groups) {
  return forward_impl(input, weight, c10::nullopt, c10::nullopt, stride, padding, dilation,
                      groups, false, "adder_conv2d");
}

at::Tensor adder_conv2d_fused_cuda(const at::Tensor& input, const at::Tensor& weight,
                                   const c10::optional<at::Tensor>& scale,
                                   const c10::optional<at::Tensor>& shift,
                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                   at::IntArrayRef dilation, int64_t groups, bool relu) {
  return forward_impl(input, weight, scale, shift, stride, padding, dilation, groups, relu,
                      "adder_conv2d_fused");
}

bool wgrad_via_cudnn() {
  const char* mode = std::getenv("ADDERNET_CUDA_WGRAD");
  if (mode == nullptr || *mode == '\0' || std::strcmp(mode, "cudnn") == 0) return true;
  TORCH_CHECK(std::strcmp(mode, "kernel") == 0,
              "ADDERNET_CUDA_WGRAD must be 'kernel' or 'cudnn', got '", mode, "'");
  return false;
}

// sum G*Xpad is an ordinary convolution weight gradient. It runs in float so the subtraction
// of W * sum(G) does not cancel away half-precision digits; it follows the caller's cuDNN TF32
// setting like F.conv2d would.
at::Tensor grad_weight_cudnn(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w,
                             const AdderConvSizes& s, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             cudaStream_t stream) {
  const at::Tensor gf = g.to(at::kFloat), xf = x.to(at::kFloat), wf = w.to(at::kFloat);
  at::Tensor conv_grad = std::get<1>(at::convolution_backward(
      gf, xf, wf, c10::nullopt, stride, padding, dilation, /*transposed=*/false,
      /*output_padding=*/{0, 0}, groups, {false, true, false}));
  conv_grad = conv_grad.contiguous();
  const at::Tensor gsum = gf.sum({0, 2, 3}).contiguous();
  at::Tensor gw = at::empty(w.sizes(), w.options());
  dispatch_cuda_dtype(w.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    C10_CUDA_CHECK(cuda::adder_conv2d_grad_weight_correction<T>(
        conv_grad.data_ptr<float>(), gsum.data_ptr<float>(), cptr<T>(w), mptr<T>(gw), s,
        stream));
  });
  return gw;
}

at::Tensor grad_weight_kernel(const at::Tensor& g, const at::Tensor& x, const at::Tensor& w,
                              const AdderConvSizes& s, cudaStream_t stream) {
  at::Tensor gw = at::empty(w.sizes(), w.options());
  const size_t bytes = cuda::adder_conv2d_grad_weight_workspace_bytes(s);
  at::Tensor ws = at::empty({int64_t((bytes + sizeof(float) - 1) / sizeof(float))},
                            x.options().dtype(at::kFloat));
  dispatch_cuda_dtype(w.scalar_type(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    C10_CUDA_CHECK(cuda::adder_conv2d_grad_weight<T>(cptr<T>(g), cptr<T>(x), cptr<T>(w),
                                                     ws.data_ptr<float>(), bytes, mptr<T>(gw),
                                                     s, stream));
  });
  return gw;
}

std::tuple<at::Tensor, at::Tensor> adder_conv2d_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 2> output_mask) {
  const char* name = "adder_conv2d_backward";
  const AdderConvSizes s = check_args(input, weight, stride, padding, dilation, groups, name);
  const ConvGeometry geo{s.N, s.C, s.H, s.W, s.O, s.KH, s.KW, s.sh, s.sw, s.ph, s.pw,
                         s.dh, s.dw, s.groups, s.OH, s.OW};
  check_grad_output(grad_output, geo, input, name);
  c10::cuda::CUDAGuard guard(input.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), g = grad_output.contiguous();

  at::Tensor gi = at::empty({0}, input.options());
  if (output_mask[0]) {
    gi = at::empty(input.sizes(), input.options());
    if (gi.numel() > 0) {
      dispatch_cuda_dtype(input.scalar_type(), [&](auto tag) {
        using T = typename decltype(tag)::type;
        C10_CUDA_CHECK(cuda::adder_conv2d_grad_input<T>(cptr<T>(g), cptr<T>(x), cptr<T>(w),
                                                        mptr<T>(gi), s, stream));
      });
    }
  }
  at::Tensor gw = at::empty({0}, weight.options());
  if (output_mask[1]) {
    if (s.N == 0 || s.C == 0) {
      gw = at::zeros(weight.sizes(), weight.options());
    } else if (wgrad_via_cudnn()) {
      gw = grad_weight_cudnn(g, x, w, s, stride, padding, dilation, groups, stream);
    } else {
      gw = grad_weight_kernel(g, x, w, s, stream);
    }
  }
  return {gi, gw};
}

}  // namespace

TORCH_LIBRARY_IMPL(addernet, CUDA, m) {
  m.impl("adder_conv2d", &adder_conv2d_cuda);
  m.impl("adder_conv2d_backward", &adder_conv2d_backward_cuda);
  m.impl("adder_conv2d_fused", &adder_conv2d_fused_cuda);
}

}  // namespace addernet
