#include "adder_conv2d_common.h"

#include <c10/util/safe_numerics.h>

namespace addernet {

ConvGeometry check_geometry(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            const char* name) {
  TORCH_CHECK(input.dim() == 4, name, ": expected a 4-D input (N, C, H, W), got shape ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, name, ": expected a 4-D weight (O, C/groups, kH, kW), got shape ",
              weight.sizes());
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), name, ": input dtype ", input.scalar_type(),
              " and weight dtype ", weight.scalar_type(), " differ");
  TORCH_CHECK(input.device() == weight.device(), name, ": input is on ", input.device(),
              " but weight is on ", weight.device());
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2 && dilation.size() == 2, name,
              ": stride, padding and dilation must have two entries each");
  TORCH_CHECK(stride[0] > 0 && stride[1] > 0, name, ": stride must be positive, got ", stride);
  TORCH_CHECK(dilation[0] > 0 && dilation[1] > 0, name, ": dilation must be positive, got ", dilation);
  TORCH_CHECK(padding[0] >= 0 && padding[1] >= 0, name, ": padding must be non-negative, got ", padding);
  TORCH_CHECK(groups > 0, name, ": groups must be positive, got ", groups);
  ConvGeometry g{};
  g.N = input.size(0); g.C = input.size(1); g.H = input.size(2); g.W = input.size(3);
  g.O = weight.size(0); g.KH = weight.size(2); g.KW = weight.size(3);
  g.SH = stride[0]; g.SW = stride[1]; g.PH = padding[0]; g.PW = padding[1];
  g.DH = dilation[0]; g.DW = dilation[1]; g.G = groups;
  TORCH_CHECK(g.C % groups == 0 && g.O % groups == 0, name, ": groups=", groups,
              " must divide the input's ", g.C, " channels and the weight's ", g.O, " filters");
  TORCH_CHECK(weight.size(1) * groups == g.C, name, ": input ", input.sizes(), " has ", g.C,
              " channels but weight ", weight.sizes(), " with groups=", groups, " expects ",
              weight.size(1) * groups);
  TORCH_CHECK(g.KH > 0 && g.KW > 0, name, ": kernel size must be positive, got weight ", weight.sizes());
  // As conv2d: a weight with no filters is refused, not turned into an empty output.
  TORCH_CHECK(g.O > 0, name, ": weight ", weight.sizes(), " has no output channels (dimension 0 is 0)");
  // The sizes below must not wrap: padding 2^62 would otherwise read as a 0x0 output.
  uint64_t padded_h = 0, padded_w = 0, reach_h = 0, reach_w = 0;
  const bool wraps = c10::mul_overflows(uint64_t(g.PH), uint64_t(2), &padded_h) ||
                     c10::add_overflows(padded_h, uint64_t(g.H), &padded_h) ||
                     c10::mul_overflows(uint64_t(g.PW), uint64_t(2), &padded_w) ||
                     c10::add_overflows(padded_w, uint64_t(g.W), &padded_w) ||
                     c10::mul_overflows(uint64_t(g.DH), uint64_t(g.KH - 1), &reach_h) ||
                     c10::mul_overflows(uint64_t(g.DW), uint64_t(g.KW - 1), &reach_w);
  TORCH_CHECK(!wraps && padded_h <= uint64_t(INT64_MAX) && padded_w <= uint64_t(INT64_MAX) &&
                  reach_h < uint64_t(INT64_MAX) && reach_w < uint64_t(INT64_MAX),
              name, ": padding ", padding, " or dilation ", dilation, " with input ", input.sizes(),
              " and weight ", weight.sizes(), " overflows 64-bit size arithmetic");
  // Floor division, as conv2d: C++'s truncation would turn a span of -1 at stride 2 into size 1.
  const int64_t span_h = int64_t(padded_h) - int64_t(reach_h) - 1;
  const int64_t span_w = int64_t(padded_w) - int64_t(reach_w) - 1;
  g.OH = span_h < 0 ? 0 : span_h / g.SH + 1;
  g.OW = span_w < 0 ? 0 : span_w / g.SW + 1;
  TORCH_CHECK(g.OH > 0 && g.OW > 0, name, ": output size would be ", g.OH, "x", g.OW, " for input ",
              input.sizes(), " and weight ", weight.sizes(), "; it must be at least 1x1");
  return g;
}

void check_epilogue(const c10::optional<at::Tensor>& t, int64_t O, const at::Tensor& input,
                    const char* what, const char* name) {
  if (!t.has_value() || !t->defined()) return;
  TORCH_CHECK(t->dim() == 1 && t->size(0) == O, name, ": ", what, " must have shape (", O, "), got ",
              t->sizes());
  TORCH_CHECK(t->scalar_type() == input.scalar_type() && t->device() == input.device(), name, ": ",
              what, " (", t->scalar_type(), ", ", t->device(), ") must match the input (",
              input.scalar_type(), ", ", input.device(), ")");
}

void check_grad_output(const at::Tensor& grad_output, const ConvGeometry& g, const at::Tensor& input,
                       const char* name) {
  const int64_t oc = output_channels(g);
  TORCH_CHECK(grad_output.dim() == 4 && grad_output.size(0) == g.N && grad_output.size(1) == oc &&
                  grad_output.size(2) == g.OH && grad_output.size(3) == g.OW,
              name, ": grad_output has shape ", grad_output.sizes(), ", expected [", g.N, ", ", oc,
              ", ", g.OH, ", ", g.OW, "]");
  TORCH_CHECK(grad_output.scalar_type() == input.scalar_type() && grad_output.device() == input.device(),
              name, ": grad_output (", grad_output.scalar_type(), ", ", grad_output.device(),
              ") must match the input (", input.scalar_type(), ", ", input.device(), ")");
}

at::Tensor weight_grad_via_conv(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  const bool widen = input.scalar_type() == at::kBFloat16 || input.scalar_type() == at::kHalf;
  const at::Tensor g = widen ? grad_output.to(at::kFloat) : grad_output;
  const at::Tensor x = widen ? input.to(at::kFloat) : input;
  const at::Tensor w = widen ? weight.to(at::kFloat) : weight;
  if (g.size(0) == 0 || x.size(1) == 0) return at::zeros_like(weight);
  at::Tensor gw = std::get<1>(at::convolution_backward(g, x, w, c10::nullopt, stride, padding, dilation,
                                                       /*transposed=*/false, {0, 0}, groups,
                                                       {false, true, false}));
  gw.sub_(w * g.sum({0, 2, 3}).view({-1, 1, 1, 1}));
  return widen ? gw.to(weight.scalar_type()) : gw.contiguous();
}

}  // namespace addernet
