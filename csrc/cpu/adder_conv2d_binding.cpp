// CPU binding: checks arguments, picks the ISA, and hands work-item ranges of the raw kernels
// (csrc/kernels/cpu) to at::parallel_for. The weight gradient is an ordinary convolution weight
// gradient minus a correction, so oneDNN computes its heavy part.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#include <sstream>

#include "../kernels/cpu/adder_conv2d_cpu.h"
#include "../adder_conv2d_common.h"
#include "info.h"

namespace addernet {
namespace {

cpu::ConvShape to_cpu_shape(const ConvGeometry& g) {
  return cpu::ConvShape{g.N, g.C, g.H, g.W, g.O, g.KH, g.KW, g.SH, g.SW, g.PH, g.PW,
                        g.DH, g.DW, g.G, g.OH, g.OW};
}

// One kernel choice from the environment (tests force each); a bad value is an error naming the
// variable and what it holds.
template <typename E>
E choice_from_env(bool (*read)(E*, const char**), E fallback, const char* var) {
  E out = fallback;
  const char* error = "";
  TORCH_CHECK(read(&out, &error), error, " (", var, "='", std::getenv(var), "')");
  return out;
}

// The ISA, the patch algorithm and the forward tap, from the environment, and the thread count at::parallel_for
// will use, so that small batches split channels to fill it.
cpu::Options pick_options() {
  cpu::Options opt;
  opt.isa = choice_from_env(cpu::isa_from_env, cpu::Isa::scalar, "ADDERNET_CPU_ISA");
  opt.algo = choice_from_env(cpu::algo_from_env, cpu::Algo::automatic, "ADDERNET_CPU_ALGO");
  opt.tap = choice_from_env(cpu::tap_from_env, cpu::Tap::identity, "ADDERNET_CPU_TAP");
  opt.threads = at::get_num_threads();
  return opt;
}

// The raw kernels' element type for a tensor dtype; bf16 travels as raw bits.
template <typename F>
void dispatch_dtype(at::ScalarType dtype, const char* name, F&& f) {
  switch (dtype) {
    case at::kFloat: return f(float{});
    case at::kDouble: return f(double{});
    case at::kBFloat16: return f(cpu::bf16{});
    default:
      TORCH_CHECK(false, name, ": CPU supports float32, float64 and bfloat16, got ", dtype);
  }
}

template <typename T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }
template <typename T> const T* cptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? reinterpret_cast<const T*>(t->data_ptr()) : nullptr;
}

// Weights are packed in the compute type: float for float and bf16, double for double.
int64_t compute_bytes(at::ScalarType dtype) { return dtype == at::kDouble ? 8 : 4; }

at::Tensor forward_impl(const at::Tensor& input, const at::Tensor& weight,
                        const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                        int64_t groups, bool relu, const char* name) {
  const ConvGeometry geo = check_geometry(input, weight, stride, padding, dilation, groups, name);
  check_epilogue(scale, geo.O, input, "scale", name);
  check_epilogue(shift, geo.O, input, "shift", name);
  at::Tensor y = at::empty({geo.N, output_channels(geo), geo.OH, geo.OW}, input.options());
  if (y.numel() == 0) return y;
  const at::Tensor x = input.contiguous(), w = weight.contiguous();
  const c10::optional<at::Tensor> sc = scale.has_value() ? c10::optional<at::Tensor>(scale->contiguous()) : scale;
  const c10::optional<at::Tensor> sh = shift.has_value() ? c10::optional<at::Tensor>(shift->contiguous()) : shift;
  const cpu::ConvShape s = to_cpu_shape(geo);
  const cpu::Options opt = pick_options();
  dispatch_dtype(input.scalar_type(), name, [&](auto tag) {
    using T = decltype(tag);
    at::Tensor wpack = at::empty({cpu::Forward<T>::pack_size(s, opt) * compute_bytes(input.scalar_type())},
                                 input.options().dtype(at::kByte));
    cpu::Forward<T>::pack(s, ptr<T>(w), wpack.data_ptr(), opt);
    at::parallel_for(0, cpu::Forward<T>::work_items(s, opt), 1, [&](int64_t b, int64_t e) {
      cpu::Forward<T>::run(s, ptr<T>(x), wpack.data_ptr(), cptr<T>(sc), cptr<T>(sh), relu,
                           ptr<T>(y), b, e, opt);
    });
  });
  return y;
}

at::Tensor adder_conv2d_cpu(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  return forward_impl(input, weight, c10::nullopt, c10::nullopt, stride, padding, dilation, groups,
                      false, "adder_conv2d");
}

at::Tensor adder_conv2d_fused_cpu(const at::Tensor& input, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& scale,
                                  const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                                  bool relu) {
  return forward_impl(input, weight, scale, shift, stride, padding, dilation, groups, relu,
                      "adder_conv2d_fused");
}

std::tuple<at::Tensor, at::Tensor> adder_conv2d_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& weight,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    std::array<bool, 2> output_mask) {
  const char* name = "adder_conv2d_backward";
  const ConvGeometry geo = check_geometry(input, weight, stride, padding, dilation, groups, name);
  check_grad_output(grad_output, geo, input, name);
  const at::Tensor x = input.contiguous(), w = weight.contiguous(), g = grad_output.contiguous();
  at::Tensor gi = output_mask[0] ? at::empty(input.sizes(), input.options()) : at::empty({0}, input.options());
  at::Tensor gw = at::empty({0}, weight.options());
  if (output_mask[0] && gi.numel() > 0) {
    const cpu::ConvShape s = to_cpu_shape(geo);
    const cpu::Options opt = pick_options();
    dispatch_dtype(input.scalar_type(), name, [&](auto tag) {
      using T = decltype(tag);
      at::Tensor wpack = at::empty({cpu::InputGrad<T>::pack_size(s, opt) * compute_bytes(input.scalar_type())},
                                   input.options().dtype(at::kByte));
      cpu::InputGrad<T>::pack(s, ptr<T>(w), wpack.data_ptr(), opt);
      at::parallel_for(0, cpu::InputGrad<T>::work_items(s, opt), 1, [&](int64_t b, int64_t e) {
        cpu::InputGrad<T>::run(s, ptr<T>(x), wpack.data_ptr(), ptr<T>(g), ptr<T>(gi), b, e, opt);
      });
    });
  }
  if (output_mask[1]) gw = weight_grad_via_conv(g, x, w, stride, padding, dilation, groups);
  return {gi, gw};
}

}  // namespace

std::string cpu_info() {
  std::ostringstream out;
  out << "isa=" << cpu::isa_name(cpu::best_isa());
  out << " supported=";
  const char* sep = "";
  for (cpu::Isa isa : {cpu::Isa::scalar, cpu::Isa::avx2, cpu::Isa::avx512})
    if (cpu::isa_supported(isa)) { out << sep << cpu::isa_name(isa); sep = ","; }
  // What a call made now would run, the environment's choices included (the benchmarks print it).
  const char* error = "";
  cpu::Isa isa = cpu::best_isa();
  cpu::Tap tap = cpu::Tap::identity;
  out << " runs=" << (cpu::isa_from_env(&isa, &error) ? cpu::isa_name(isa) : "invalid");
  out << " tap=" << (cpu::tap_from_env(&tap, &error) ? cpu::tap_name(tap) : "invalid");
  out << " identity_bits=" << (cpu::prefer_256bit() ? 256 : 512);
  out << " threads=" << at::get_num_threads();
  out << " parallel=" << (AT_PARALLEL_OPENMP ? "openmp" : "native");
  return out.str();
}

// Which patch algorithm the float32 kernels run for a layer, "forward/input_grad", so that benchmark
// tables can say what they timed.
std::string cpu_algorithms(at::IntArrayRef input, at::IntArrayRef weight, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const char* name = "_cpu_algorithms";
  // Sizes only: meta tensors carry them through the ops' own argument checks (empty outputs
  // included) and output sizes.
  const at::TensorOptions meta = at::TensorOptions().device(at::kMeta).dtype(at::kFloat);
  const ConvGeometry geo = check_geometry(at::empty(input, meta), at::empty(weight, meta), stride,
                                          padding, dilation, groups, name);
  const cpu::ConvShape s = to_cpu_shape(geo);
  const cpu::Options opt = pick_options();
  return std::string(cpu::algo_name(cpu::Forward<float>::choose(s, opt))) + "/" +
         cpu::algo_name(cpu::InputGrad<float>::choose(s, opt));
}

TORCH_LIBRARY_IMPL(addernet, CPU, m) {
  m.impl("adder_conv2d", &adder_conv2d_cpu);
  m.impl("adder_conv2d_backward", &adder_conv2d_backward_cpu);
  m.impl("adder_conv2d_fused", &adder_conv2d_fused_cpu);
}

}  // namespace addernet
