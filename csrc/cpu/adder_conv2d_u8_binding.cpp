// CPU binding of the uint8 adder convolution (schema in csrc/adder_conv2d_u8.cpp): checks
// arguments, stages the input once and hands work-item ranges of the raw kernels (csrc/kernels/cpu/adder_conv2d_u8*) to
// at::parallel_for. Inference only: no gradient is defined.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "../adder_conv2d_common.h"
#include "../kernels/cpu/adder_conv2d_u8.h"
#include "info.h"

namespace addernet {
namespace {

cpu::Options u8_options(const char* name) {
  cpu::Options opt;
  const char* error = "";
  TORCH_CHECK(cpu::isa_from_env(&opt.isa, &error), name, ": ", error, " (ADDERNET_CPU_ISA='",
              std::getenv("ADDERNET_CPU_ISA"), "')");
  opt.threads = at::get_num_threads();
  return opt;
}

cpu::U8Vec u8_vector(const char* name) {
  cpu::U8Vec vec = cpu::U8Vec::automatic;
  const char* error = "";
  TORCH_CHECK(cpu::u8_vec_from_env(&vec, &error), name, ": ", error, " (ADDERNET_U8_VECTOR='",
              std::getenv("ADDERNET_U8_VECTOR"), "')");
  return vec;
}

}  // namespace

// Which kernel set and vector width the uint8 op runs here, for the benchmark tables.
std::string u8_info() {
  const cpu::U8Vec vec = u8_vector("_u8_info");
  const cpu::Isa isa = u8_options("_u8_info").isa;
  std::string out = std::string("isa=") + cpu::isa_name(isa) + " vector=";
  if (isa != cpu::Isa::avx512) return out + (isa == cpu::Isa::avx2 ? "ymm" : "portable");
  const cpu::U8Vec v = vec == cpu::U8Vec::automatic ? cpu::u8_vec_default() : vec;
  return out + cpu::u8_vec_name(v) + (vec == cpu::U8Vec::automatic ? " (automatic)" : " (forced)");
}

namespace {

void check_channel_vector(const c10::optional<at::Tensor>& t, int64_t O, const char* what,
                          const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == O, name, ": ", what, " must have shape (", O, "), got ",
              t->sizes());
  TORCH_CHECK(t->scalar_type() == at::kFloat && t->device().is_cpu(), name, ": ", what,
              " must be a float32 CPU tensor, got ", t->scalar_type(), " on ", t->device());
}

at::Tensor adder_conv2d_u8_cpu(const at::Tensor& input, const at::Tensor& weight, int64_t zero_point,
                               const c10::optional<at::Tensor>& scale,
                               const c10::optional<at::Tensor>& shift, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                               bool relu, c10::optional<double> out_scale, int64_t out_zero_point,
                               c10::optional<double> input_scale) {
  const char* name = "adder_conv2d_u8";
  TORCH_CHECK(weight.scalar_type() == at::kByte, name, ": weight must be uint8, got ", weight.scalar_type());
  const bool float_in = input.scalar_type() == at::kFloat;
  TORCH_CHECK(float_in || input.scalar_type() == at::kByte, name,
              ": input must be uint8 (quantised) or float32 (quantised here with input_scale), got ",
              input.scalar_type());
  TORCH_CHECK(float_in == input_scale.has_value(), name,
              float_in ? ": a float32 input needs input_scale to quantise it"
                       : ": input_scale is for float32 inputs; this input is already uint8");
  if (float_in)
    TORCH_CHECK(std::isfinite(*input_scale) && *input_scale > 0, name,
                ": input_scale must be positive and finite, got ", *input_scale);
  TORCH_CHECK(zero_point >= 0 && zero_point <= 255, name, ": zero_point must be in [0, 255], got ", zero_point);
  TORCH_CHECK(out_zero_point >= 0 && out_zero_point <= 255, name,
              ": out_zero_point must be in [0, 255], got ", out_zero_point);
  if (out_scale.has_value())
    TORCH_CHECK(std::isfinite(*out_scale) && *out_scale > 0, name,
                ": out_scale must be positive and finite, got ", *out_scale);
  TORCH_CHECK(input.device().is_cpu() && weight.device().is_cpu(), name,
              ": has a CPU kernel only, got input on ", input.device(), " and weight on ", weight.device());
  // check_geometry wants one dtype; it reads sizes only, so meta tensors of the sizes stand in.
  const at::TensorOptions meta = at::TensorOptions().device(at::kMeta).dtype(at::kByte);
  const ConvGeometry geo = check_geometry(at::empty(input.sizes(), meta), at::empty(weight.sizes(), meta),
                                          stride, padding, dilation, groups, name);
  check_channel_vector(scale, geo.O, "scale", name);
  check_channel_vector(shift, geo.O, "shift", name);
  cpu::ConvShape s{geo.N, geo.C, geo.H, geo.W, geo.O, geo.KH, geo.KW, geo.SH, geo.SW,
                   geo.PH, geo.PW, geo.DH, geo.DW, geo.G, geo.OH, geo.OW};
  // An unpadded strided 1x1 layer (ResNet's downsampling shortcut) reads one pixel in SH*SW: those
  // are sliced out first and the layer runs at stride 1, instead of staging (and quantising) the
  // whole input for a quarter of it.
  const bool subsample = s.KH == 1 && s.KW == 1 && s.PH == 0 && s.PW == 0 && (s.SH > 1 || s.SW > 1);
  if (subsample) {
    s.H = s.OH;
    s.W = s.OW;
    s.SH = s.SW = 1;
  }
  TORCH_CHECK(s.K() <= cpu::kU8MaxK, name, ": a patch of ", s.K(), " taps could overflow the int32 sum (at most ",
              cpu::kU8MaxK, ")");

  cpu::U8Epilogue ep;
  ep.kind = out_scale.has_value() ? cpu::U8Out::u8
            : (scale.has_value() || shift.has_value() || relu) ? cpu::U8Out::f32
                                                               : cpu::U8Out::raw;
  const at::ScalarType out_dtype = ep.kind == cpu::U8Out::u8 ? at::kByte
                                   : ep.kind == cpu::U8Out::f32 ? at::kFloat
                                                                : at::kInt;
  at::Tensor y = at::empty({geo.N, geo.O, geo.OH, geo.OW}, input.options().dtype(out_dtype));
  if (y.numel() == 0) return y;
  // Weights stored channels last (as QuantAdderConv2d keeps them) are already the packed runs.
  const bool w_cl = weight.is_contiguous(at::MemoryFormat::ChannelsLast) && !weight.is_contiguous();
  const at::Tensor x = subsample ? input.slice(2, 0, (geo.OH - 1) * geo.SH + 1, geo.SH)
                                       .slice(3, 0, (geo.OW - 1) * geo.SW + 1, geo.SW)
                                       .contiguous()
                                 : input.contiguous();
  const at::Tensor w = w_cl ? weight : weight.contiguous();
  const at::Tensor sc = scale.has_value() ? scale->contiguous() : at::Tensor();
  const at::Tensor sh = shift.has_value() ? shift->contiguous() : at::Tensor();
  ep.scale = sc.defined() ? sc.data_ptr<float>() : nullptr;
  ep.shift = sh.defined() ? sh.data_ptr<float>() : nullptr;
  ep.relu = relu;
  ep.out_scale = out_scale.has_value() ? float(*out_scale) : 1.0f;
  ep.out_zero_point = int32_t(out_zero_point);

  const cpu::Options opt = u8_options(name);
  const cpu::U8Vec vec = u8_vector(name);
  const at::TensorOptions bytes = input.options().dtype(at::kByte);
  at::Tensor xs = at::empty({cpu::ForwardU8::stage_size(s)}, bytes);
  std::atomic<bool> finite{true};
  at::parallel_for(0, cpu::ForwardU8::stage_items(s), 1, [&](int64_t b, int64_t e) {
    if (float_in) {
      if (!cpu::ForwardU8::stage(s, x.data_ptr<float>(), float(*input_scale), uint8_t(zero_point),
                                 xs.data_ptr<uint8_t>(), b, e))
        finite = false;
    } else {
      cpu::ForwardU8::stage(s, x.data_ptr<uint8_t>(), uint8_t(zero_point), xs.data_ptr<uint8_t>(), b, e);
    }
  });
  // No byte stands for NaN or inf: refuse rather than give a finite answer (docs/int8.md).
  TORCH_CHECK_VALUE(finite, name, ": the float32 input holds NaN or inf, which the uint8 grid cannot represent");
  at::Tensor wp = at::empty({cpu::ForwardU8::pack_size(s, opt)}, bytes);
  cpu::ForwardU8::pack(s, w.data_ptr<uint8_t>(), wp.data_ptr<uint8_t>(), opt, w_cl);
  at::parallel_for(0, cpu::ForwardU8::work_items(s, opt), 1, [&](int64_t b, int64_t e) {
    cpu::ForwardU8::run(s, xs.data_ptr<uint8_t>(), wp.data_ptr<uint8_t>(), ep, y.data_ptr(), b, e, opt, vec);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(addernet, CPU, m) { m.impl("adder_conv2d_u8", &adder_conv2d_u8_cpu); }

}  // namespace addernet
