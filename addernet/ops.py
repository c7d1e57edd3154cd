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
from .backends import grad2


class TapSums:
    """The native tap sums (schemas in csrc/adder_conv2d.cpp) that the second-order gradients and
    "exact" mode are built from, in the call form of backends/reference.py's."""

    @staticmethod
    def tapsum_output(a, b, x, w, stride, padding, dilation, groups, fn):
        return torch.ops.addernet.adder_conv2d_tapsum_output(
            a, b, x, w, list(stride), list(padding), list(dilation), groups, fn)

    @staticmethod
    def tapsum_input(g, x, w, stride, padding, dilation, groups, fn):
        return torch.ops.addernet.adder_conv2d_tapsum_input(
            g.contiguous(), x, w, list(stride), list(padding), list(dilation), groups, fn)

    @staticmethod
    def tapsum_weight(g, a, x, w, stride, padding, dilation, groups, fn):
        return torch.ops.addernet.adder_conv2d_tapsum_weight(
            g.contiguous(), a, x, w, list(stride), list(padding), list(dilation), groups, fn)


TAP_SUMS = TapSums


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

    @torch.library.register_fake("addernet::adder_conv2d_tapsum_output")
    def _(a, b, input, weight, stride, padding, dilation, groups, fn):
        name = "adder_conv2d_tapsum_output"
        return input.new_empty(_out_shape(input, weight, stride, padding, dilation, groups, name))

    @torch.library.register_fake("addernet::adder_conv2d_tapsum_input")
    def _(grad_output, input, weight, stride, padding, dilation, groups, fn):
        return input.new_empty(input.shape)

    @torch.library.register_fake("addernet::adder_conv2d_tapsum_weight")
    def _(grad_output, a, input, weight, stride, padding, dilation, groups, fn):
        return weight.new_empty(weight.shape)

    # Third order: the tap sums are not differentiated. Asked to, they say so, rather than let
    # torch warn about a missing autograd kernel and carry on with a wrong (dropped) gradient.
    for name in ("tapsum_output", "tapsum_input", "tapsum_weight"):
        torch.library.register_autograd(f"addernet::adder_conv2d_{name}", _third_order_refused)

    # Autograd: the backward is an op of its own, so it too is traceable and opcheck-able.
    grad2.register_first_order_autograd("addernet::adder_conv2d", torch.ops.addernet.adder_conv2d_backward)

    # The backward is differentiable too (double backward: IGAM, gradient penalties): its
    # vector-Jacobian products are in backends/grad2.py, built from the three tap sums.
    grad2.register_backward_autograd("addernet::adder_conv2d_backward", TAP_SUMS)
    # grad_mode="exact": the same forward under an op of its own, whose backward is sign-based.
    grad2.define_exact("addernet::adder_conv2d_exact", _native_forward, TAP_SUMS)
    _register_fused_autograd()


def _third_order_refused(ctx, grad):
    raise RuntimeError(
        "addernet: third-order gradients through the adder op are not implemented on the native "
        "backend (first and second order are); use backend='reference' for higher orders"
    )


def _native_forward(input, weight, stride, padding, dilation, groups):
    return torch.ops.addernet.adder_conv2d(input, weight, stride, padding, dilation, groups)


def _register_fused_autograd() -> None:
    """The fused op is meant for inference, but it is differentiable: y = relu?(s * z + b) with
    z = adder(x, w) recomputed in the backward, through ops that are themselves differentiable."""

    def setup_context(ctx, inputs, output):
        input, weight, scale, shift, stride, padding, dilation, groups, relu = inputs
        ctx.save_for_backward(input, weight, scale, shift, output)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.relu = relu

    def backward(ctx, grad):
        input, weight, scale, shift, out = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if ctx.relu:
            grad = grad * (out > 0).to(grad.dtype)
        gz = grad if scale is None else grad * scale.view(1, -1, 1, 1)
        gx = gw = gs = gb = None
        if needs[0] or needs[1]:
            mask = [grad2.engine_will_use(ctx, 0), grad2.engine_will_use(ctx, 1)]
            gx, gw = torch.ops.addernet.adder_conv2d_backward(gz.contiguous(), input, weight, *ctx.conf, mask)
            gx, gw = (gx if mask[0] else None), (gw if mask[1] else None)
        if scale is not None and needs[2]:
            z = torch.ops.addernet.adder_conv2d(input, weight, *ctx.conf)
            gs = (grad * z).sum((0, 2, 3))
        if shift is not None and needs[3]:
            gb = grad.sum((0, 2, 3))
        return gx, gw, gs, gb, None, None, None, None, None

    torch.library.register_autograd("addernet::adder_conv2d_fused", backward, setup_context=setup_context)


if native_available():
    _register()

from . import ops_u8  # noqa: E402,F401  (the uint8 inference op's fake kernel)
