// CPU binding of the three tap sums (kernels/cpu/tapsum.h): argument checks, then work-item
// ranges to at::parallel_for. bfloat16 runs through the float kernels (these sums serve
// second-order gradients, where one more rounding of a float32 result is the cheap part).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../kernels/cpu/tapsum.h"
#include "../tapsum_common.h"

namespace addernet {
namespace {

cpu::ConvShape shape_of(const ConvGeometry& g) {
  return cpu::ConvShape{g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                        g.DH, g.DW, g.G, g.OH, g.OW};
}

cpu::Options options() {
  cpu::Options opt;
  const char* error = "";
  TORCH_CHECK(cpu::isa_from_env(&opt.isa, &error), error, " (ADDERNET_CPU_ISA)");
  opt.threads = at::get_num_threads();
  return opt;
}

// The tensor the kernels read: contiguous, in float or double.
at::Tensor operand(const at::Tensor& t) {
  return (t.scalar_type() == at::kBFloat16 ? t.to(at::kFloat) : t).contiguous();
}
c10::optional<at::Tensor> operand(const c10::optional<at::Tensor>& t) {
  if (!t.has_value() || !t->defined()) return c10::nullopt;
  return operand(*t);
}

template <typename F>
void dispatch(at::ScalarType dtype, const char* name, F&& f) {
  switch (dtype) {
    case at::kFloat: case at::kBFloat16: return f(float{});
    case at::kDouble: return f(double{});
    default: TORCH_CHECK(false, name, ": CPU supports float32, float64 and bfloat16, got ", dtype);
  }
}

template <typename T> const T* cptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<T>() : nullptr;
}

at::Tensor tapsum_output_cpu(const c10::optional<at::Tensor>& a, const c10::optional<at::Tensor>& b,
                             const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_output";
  const ConvGeometry geo = check_geometry(input, weight, stride, padding, dilation, groups, name);
  const auto code = static_cast<cpu::TapFn>(tap_fn_code(fn, name));
  check_like(a, input, "a", "the input", name);
  check_like(b, weight, "b", "the weight", name);
  const at::Tensor x = operand(input), w = operand(weight);
  const c10::optional<at::Tensor> ao = operand(a), bo = operand(b);
  at::Tensor out = at::zeros({geo.N, geo.O, geo.OH, geo.OW}, x.options());
  const cpu::ConvShape s = shape_of(geo);
  if (out.numel() > 0 && s.K() > 0 && (ao || bo)) {
    const cpu::Options opt = options();
    dispatch(input.scalar_type(), name, [&](auto tag) {
      using T = decltype(tag);
      at::parallel_for(0, cpu::TapSums<T>::output_items(s, opt), 1, [&](int64_t b0, int64_t e0) {
        cpu::TapSums<T>::output(s, cptr<T>(ao), cptr<T>(bo), x.data_ptr<T>(), w.data_ptr<T>(),
                                out.data_ptr<T>(), code, b0, e0, opt);
      });
    });
  }
  return out.to(input.scalar_type());
}

at::Tensor tapsum_input_cpu(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
                            at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                            int64_t groups, c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_input";
  const ConvGeometry geo = check_geometry(input, weight, stride, padding, dilation, groups, name);
  check_grad_output(grad_output, geo, input, name);
  const auto code = static_cast<cpu::TapFn>(tap_fn_code(fn, name));
  const at::Tensor x = operand(input), w = operand(weight), g = operand(grad_output);
  at::Tensor out = at::zeros(x.sizes(), x.options());
  const cpu::ConvShape s = shape_of(geo);
  if (out.numel() > 0 && g.numel() > 0) {
    const cpu::Options opt = options();
    dispatch(input.scalar_type(), name, [&](auto tag) {
      using T = decltype(tag);
      at::Tensor wpack = at::empty({cpu::TapSums<T>::input_pack_size(s, opt)}, x.options());
      cpu::TapSums<T>::input_pack(s, w.data_ptr<T>(), wpack.data_ptr<T>(), opt);
      at::parallel_for(0, cpu::TapSums<T>::input_items(s, opt), 1, [&](int64_t b0, int64_t e0) {
        cpu::TapSums<T>::input(s, g.data_ptr<T>(), x.data_ptr<T>(), wpack.data_ptr<T>(), out.data_ptr<T>(),
                               code, b0, e0, opt);
      });
    });
  }
  return out.to(input.scalar_type());
}

at::Tensor tapsum_weight_cpu(const at::Tensor& grad_output, const c10::optional<at::Tensor>& a,
                             const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                             at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                             c10::string_view fn) {
  const char* name = "adder_conv2d_tapsum_weight";
  const ConvGeometry geo = check_geometry(input, weight, stride, padding, dilation, groups, name);
  check_grad_output(grad_output, geo, input, name);
  const auto code = static_cast<cpu::TapFn>(tap_fn_code(fn, name));
  check_like(a, input, "a", "the input", name);
  const at::Tensor x = operand(input), w = operand(weight), g = operand(grad_output);
  const c10::optional<at::Tensor> ao = operand(a);
  const cpu::ConvShape s = shape_of(geo);
  if (g.numel() == 0 || w.numel() == 0) return at::zeros(weight.sizes(), weight.options());
  const cpu::Options opt = options();
  at::Tensor out;
  dispatch(input.scalar_type(), name, [&](auto tag) {
    using T = decltype(tag);
    const int64_t chunks = cpu::TapSums<T>::weight_chunks(s, opt);
    at::Tensor partial = at::empty({chunks, geo.O, s.K()}, x.options());
    at::parallel_for(0, cpu::TapSums<T>::weight_items(s, opt), 1, [&](int64_t b0, int64_t e0) {
      cpu::TapSums<T>::weight(s, g.data_ptr<T>(), cptr<T>(ao), x.data_ptr<T>(), w.data_ptr<T>(),
                              partial.data_ptr<T>(), code, b0, e0, opt);
    });
    out = partial.sum(0).view(weight.sizes());
  });
  return out.to(weight.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(addernet, CPU, m) {
  m.impl("adder_conv2d_tapsum_output", &tapsum_output_cpu);
  m.impl("adder_conv2d_tapsum_input", &tapsum_input_cpu);
  m.impl("adder_conv2d_tapsum_weight", &tapsum_weight_cpu);
}

}  // namespace addernet
