"""The native ops' argument checks, in Python, for their fake (meta) kernels.

Under torch.compile or on meta tensors the C++ kernels never run, so their checks must run here
instead: the same conditions as csrc/adder_conv2d_common.cpp and the bindings, raising RuntimeError (as TORCH_CHECK
does) with the same messages, so that a mistake reads the same in eager and compiled code.
"""
from __future__ import annotations

import torch

INT64_MAX = 2**63 - 1

# The dtypes each device's kernels take, with the message the C++ binding gives for any other.
DEVICE_DTYPES = {
    "cpu": ((torch.float32, torch.float64, torch.bfloat16), "CPU supports float32, float64 and bfloat16"),
    "cuda": ((torch.float32, torch.float16, torch.bfloat16), "CUDA supports float32, float16 and bfloat16"),
}

# c10's names for the dtypes, as the C++ messages print them.
_C10_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half",
              torch.bfloat16: "BFloat16"}


def _dtype(t: torch.Tensor) -> str:
    return _C10_NAMES.get(t.dtype, str(t.dtype))


def _sizes(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _check(cond, name: str, *msg) -> None:
    if not cond:
        raise RuntimeError(f"{name}: " + "".join(str(m) for m in msg))


def check_geometry(input, weight, stride, padding, dilation, groups, name):
    """Checks what check_geometry does in C++; returns (N, O, OH, OW)."""
    _check(input.dim() == 4, name, "expected a 4-D input (N, C, H, W), got shape ", _sizes(input))
    _check(weight.dim() == 4, name, "expected a 4-D weight (O, C/groups, kH, kW), got shape ",
           _sizes(weight))
    _check(input.dtype == weight.dtype, name, "input dtype ", _dtype(input), " and weight dtype ",
           _dtype(weight), " differ")
    _check(input.device == weight.device, name, "input is on ", input.device, " but weight is on ",
           weight.device)
    stride, padding, dilation = list(stride), list(padding), list(dilation)
    _check(len(stride) == 2 and len(padding) == 2 and len(dilation) == 2, name,
           "stride, padding and dilation must have two entries each")
    _check(stride[0] > 0 and stride[1] > 0, name, "stride must be positive, got ", stride)
    _check(dilation[0] > 0 and dilation[1] > 0, name, "dilation must be positive, got ", dilation)
    _check(padding[0] >= 0 and padding[1] >= 0, name, "padding must be non-negative, got ", padding)
    _check(groups > 0, name, "groups must be positive, got ", groups)
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    _check(c % groups == 0 and o % groups == 0, name, "groups=", groups, " must divide the input's ",
           c, " channels and the weight's ", o, " filters")
    _check(cg * groups == c, name, "input ", _sizes(input), " has ", c, " channels but weight ",
           _sizes(weight), " with groups=", groups, " expects ", cg * groups)
    _check(kh > 0 and kw > 0, name, "kernel size must be positive, got weight ", _sizes(weight))
    _check(o > 0, name, "weight ", _sizes(weight), " has no output channels (dimension 0 is 0)")
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    reach = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
    _check(max(padded) <= INT64_MAX and max(reach) < INT64_MAX, name, "padding ", padding,
           " or dilation ", dilation, " with input ", _sizes(input), " and weight ", _sizes(weight),
           " overflows 64-bit size arithmetic")
    spans = (padded[0] - reach[0] - 1, padded[1] - reach[1] - 1)
    oh, ow = (0 if sp < 0 else sp // st + 1 for sp, st in zip(spans, stride))
    _check(oh > 0 and ow > 0, name, "output size would be ", oh, "x", ow, " for input ", _sizes(input),
           " and weight ", _sizes(weight), "; it must be at least 1x1")
    return n, (0 if c == 0 else o), oh, ow  # no input channels: (N, 0, OH, OW), as conv2d


def check_epilogue(t, o, input, what, name) -> None:
    if t is None:
        return
    _check(t.dim() == 1 and t.shape[0] == o, name, what, " must have shape (", o, "), got ", _sizes(t))
    _check(t.dtype == input.dtype and t.device == input.device, name, what, " (", _dtype(t), ", ",
           t.device, ") must match the input (", _dtype(input), ", ", input.device, ")")


def check_grad_output(grad_output, shape, input, name) -> None:
    n, o, oh, ow = shape
    _check(grad_output.dim() == 4 and tuple(grad_output.shape) == (n, o, oh, ow), name,
           "grad_output has shape ", _sizes(grad_output), ", expected [", n, ", ", o, ", ", oh, ", ",
           ow, "]")
    _check(grad_output.dtype == input.dtype and grad_output.device == input.device, name,
           "grad_output (", _dtype(grad_output), ", ", grad_output.device, ") must match the input (",
           _dtype(input), ", ", input.device, ")")


def out_shape(input, weight, stride, padding, dilation, groups, name):
    """The output shape after every check the C++ binding makes (geometry, device, dtype), so that
    torch.compile and meta tensors refuse what eager refuses."""
    shape = check_geometry(input, weight, stride, padding, dilation, groups, name)
    allowed = DEVICE_DTYPES.get(input.device.type)
    if input.device.type == "cuda" and input.dtype == torch.float64:
        raise RuntimeError(f"{name}: float64 is supported only on CPU; on CUDA use float32, float16 or "
                           f"bfloat16 (input {_sizes(input)} on {input.device})")
    if allowed is not None and input.dtype not in allowed[0]:
        raise RuntimeError(f"{name}: {allowed[1]}, got {_dtype(input)}")
    return shape
