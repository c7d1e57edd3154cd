"""Python-side registrations for the native ``torch.ops.addernet`` ops.

The schemas and the CPU/CUDA kernels come from the C++ extension; what only Python can add is
registered here, one line of why each, in the manner of pytorch/extension-cpp's ops.py.
"""
from __future__ import annotations

import torch

from ._extension import native_available
from ._validation import out_size


def _out_shape(input, weight, stride, padding, dilation):
    n, _, h, w = input.shape
    o, _, kh, kw = weight.shape
    return (
        n,
        o,
        out_size(h, kh, stride[0], padding[0], dilation[0]),
        out_size(w, kw, stride[1], padding[1], dilation[1]),
    )


def _register() -> None:
    # Fake (meta) kernels let torch.compile and FakeTensor tracing infer shapes without running C++.
    @torch.library.register_fake("addernet::adder_conv2d")
    def _(input, weight, stride, padding, dilation, groups):
        return input.new_empty(_out_shape(input, weight, stride, padding, dilation))

    @torch.library.register_fake("addernet::adder_conv2d_backward")
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
        gi = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
        gw = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
        return gi, gw

    @torch.library.register_fake("addernet::adder_conv2d_fused")
    def _(input, weight, scale, shift, stride, padding, dilation, groups, relu):
        return input.new_empty(_out_shape(input, weight, stride, padding, dilation))

    # Autograd: the backward is an op of its own, so it too is traceable and opcheck-able.
    def setup_context(ctx, inputs, output):
        input, weight, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(input, weight)
        ctx.conf = (stride, padding, dilation, groups)

    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1]]
        gi, gw = torch.ops.addernet.adder_conv2d_backward(
            grad_output.contiguous(), input, weight, *ctx.conf, mask
        )
        return (gi if mask[0] else None), (gw if mask[1] else None), None, None, None, None

    torch.library.register_autograd("addernet::adder_conv2d", backward, setup_context=setup_context)


if native_available():
    _register()

from . import ops_u8  # noqa: E402,F401  (the uint8 inference op's fake kernel)
