"""Python-side registrations for the native ``torch.ops.addernet`` ops.

The schemas and the CPU/CUDA kernels come from the C++ extension; what only Python can add is
registered here, one line of why each, in the manner of pytorch/extension-cpp's ops.py.
"""
from __future__ import annotations

import torch

from . import _native_checks as _checks
from ._extension import native_available

# The dtypes each device's kernels take, with the message the C++ binding gives for any other.
_DEVICE_DTYPES = {
    "cpu": ((torch.float32, torch.float64, torch.bfloat16), "CPU supports float32, float64 and bfloat16"),
    "cuda": ((torch.float32, torch.float16, torch.bfloat16), "CUDA supports float32, float16 and bfloat16"),
}


def _out_shape(input, weight, stride, padding, dilation, groups, name):
    # What the C++ binding checks, so that torch.compile and meta tensors refuse what eager refuses.
    shape = _checks.check_geometry(input, weight, stride, padding, dilation, groups, name)
    allowed = _DEVICE_DTYPES.get(input.device.type)
    if input.device.type == "cuda" and input.dtype == torch.float64:
        raise RuntimeError(f"{name}: float64 is supported only on CPU; on CUDA use float32, float16 or "
                           f"bfloat16 (input {_checks._sizes(input)} on {input.device})")
    if allowed is not None and input.dtype not in allowed[0]:
        raise RuntimeError(f"{name}: {allowed[1]}, got {_checks._dtype(input)}")
    return shape


def _register() -> None:
    # Fake (meta) kernels let torch.compile and FakeTensor tracing infer shapes without running C++.
    @torch.library.register_fake("addernet::adder_conv2d")
    def _(input, weight, stride, padding, dilation, groups):
        return input.new_empty(_out_shape(input, weight, stride, padding, dilation, groups, "adder_conv2d"))

    @torch.library.register_fake("addernet::adder_conv2d_backward")
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
        name = "adder_conv2d_backward"
        shape = _out_shape(input, weight, stride, padding, dilation, groups, name)
        _checks.check_grad_output(grad_output, shape, input, name)
        gi = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
        gw = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
        return gi, gw

    @torch.library.register_fake("addernet::adder_conv2d_fused")
    def _(input, weight, scale, shift, stride, padding, dilation, groups, relu):
        name = "adder_conv2d_fused"
        shape = _out_shape(input, weight, stride, padding, dilation, groups, name)
        _checks.check_epilogue(scale, shape[1], input, "scale", name)
        _checks.check_epilogue(shift, shape[1], input, "shift", name)
        return input.new_empty(shape)

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
