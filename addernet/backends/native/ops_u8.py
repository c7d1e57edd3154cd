"""Python-side registration of the native ``torch.ops.addernet.adder_conv2d_u8`` (inference only).

The schema and the CPU kernel come from the C++ extension (csrc/adder_conv2d_u8.cpp and
csrc/cpu/adder_conv2d_u8_binding.cpp); the fake kernel here lets torch.compile and FakeTensor tracing infer its output without running it.
"""
from __future__ import annotations

import torch

from ..._validation import out_size
from .extension import native_available


def u8_out_dtype(scale, shift, relu, out_scale) -> torch.dtype:
    """The op's output type: uint8 when requantising, float32 with an epilogue, else raw int32."""
    if out_scale is not None:
        return torch.uint8
    if scale is not None or shift is not None or relu:
        return torch.float32
    return torch.int32


def _out_shape(input, weight, stride, padding, dilation):
    # Geometry only: checks.out_shape also asks for input and weight of one float dtype, and this op
    # takes a float32 input beside uint8 weights (it quantises on the way in).
    n, _, h, w = input.shape
    o, _, kh, kw = weight.shape
    return (n, o, out_size(h, kh, stride[0], padding[0], dilation[0]),
            out_size(w, kw, stride[1], padding[1], dilation[1]))


def _register() -> None:
    @torch.library.register_fake("addernet::adder_conv2d_u8")
    def _(input, weight, zero_point, scale, shift, stride, padding, dilation, groups, relu=False,
          out_scale=None, out_zero_point=0, input_scale=None):
        dtype = u8_out_dtype(scale, shift, relu, out_scale)
        return input.new_empty(_out_shape(input, weight, stride, padding, dilation), dtype=dtype)


if native_available():
    _register()
