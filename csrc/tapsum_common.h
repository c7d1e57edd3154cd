// Device-independent pieces of the tap-sum bindings (csrc/{cpu,cuda}/adder_conv2d_tapsum.*):
// the tap function's name, and checks whose messages name the tensors.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/string_view.h>

#include "adder_conv2d_common.h"

namespace addernet {

// 0 = hardtanh (clamp(D, -1, 1)), 1 = sign, 2 = mask (1[|D| < 1]), the kernels' TapFn order.
int tap_fn_code(c10::string_view fn, const char* name);

// An optional tensor shaped like `like` (same dtype and device), or absent.
void check_like(const c10::optional<at::Tensor>& t, const at::Tensor& like, const char* what,
                const char* like_what, const char* name);

}  // namespace addernet
