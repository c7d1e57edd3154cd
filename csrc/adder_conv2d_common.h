// Device-independent pieces of the bindings: argument checks whose messages name the shapes,
// and the weight gradient through an ordinary convolution weight gradient.
#pragma once

#include <ATen/ATen.h>

namespace addernet {

struct ConvGeometry {
  int64_t N, C, H, W, O, KH, KW, SH, SW, PH, PW, DH, DW, G, OH, OW;
};

ConvGeometry check_geometry(const at::Tensor& input, const at::Tensor& weight, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            const char* name);
void check_epilogue(const c10::optional<at::Tensor>& t, int64_t O, const at::Tensor& input,
                    const char* what, const char* name);
// The output's channels: O, or 0 for an input with no channels, as conv2d gives (N, 0, OH, OW).
inline int64_t output_channels(const ConvGeometry& g) { return g.C == 0 ? 0 : g.O; }

void check_grad_output(const at::Tensor& grad_output, const ConvGeometry& g, const at::Tensor& input,
                       const char* name);

// sum_{n,p} G*(Xcol - W) = conv_weight_grad(X, G) - W * sum_{n,p} G. Padded taps come out right:
// Xcol is 0 there, so they contribute -W*G, which the correction holds. Low-precision inputs are
// widened to float32 first, so that the reduction accumulates in float32.
at::Tensor weight_grad_via_conv(const at::Tensor& grad_output, const at::Tensor& input,
                                const at::Tensor& weight, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);

}  // namespace addernet
