"""The native ops, in the shape of pytorch/extension-cpp's ops.py: each Python wrapper of a
``torch.ops.addernet`` op beside its fake (meta) kernel and its autograd registration.

The schemas and the CPU/CUDA kernels come from the C++ extension (csrc/adder_conv2d.cpp and the
bindings); what only Python can add is registered here, one line of why each. Fake kernels let
torch.compile and FakeTensor tracing infer shapes without running C++, after the same checks.
Imported only when the extension loaded (the ops do not exist otherwise).
"""
from __future__ import annotations

import torch

from .. import grad2
from . import checks

__all__ = ["adder_conv2d", "adder_conv2d_backward", "adder_conv2d_exact", "adder_conv2d_fused", "TapSums"]

_ops = torch.ops.addernet


def _conf(stride, padding, dilation, groups):
    return list(stride), list(padding), list(dilation), int(groups)


# ---------------------------------------------------------------------------------- forward

def adder_conv2d(x, weight, stride, padding, dilation, groups):
    """Y = -sum |X - W| over each patch (no bias), with the paper's gradients."""
    return _ops.adder_conv2d(x, weight, *_conf(stride, padding, dilation, groups))


@torch.library.register_fake("addernet::adder_conv2d")
def _(input, weight, stride, padding, dilation, groups):
    return input.new_empty(checks.out_shape(input, weight, stride, padding, dilation, groups, "adder_conv2d"))


# ---------------------------------------------------------------------------------- backward

def adder_conv2d_backward(grad_output, x, weight, stride, padding, dilation, groups, output_mask):
    """(grad_input, grad_weight), the paper's; a masked-out one is an empty tensor."""
    return _ops.adder_conv2d_backward(grad_output.contiguous(), x, weight,
                                    *_conf(stride, padding, dilation, groups), list(output_mask))


@torch.library.register_fake("addernet::adder_conv2d_backward")
def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
    name = "adder_conv2d_backward"
    shape = checks.out_shape(input, weight, stride, padding, dilation, groups, name)
    checks.check_grad_output(grad_output, shape, input, name)
    gi = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
    gw = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
    return gi, gw


# Autograd: the backward is an op of its own, so it too is traceable and opcheck-able.
grad2.register_first_order_autograd("addernet::adder_conv2d", _ops.adder_conv2d_backward)


# ---------------------------------------------------------------------------------- tap sums

class TapSums:
    """The native tap sums (schemas in csrc/adder_conv2d.cpp) that the second-order gradients and
    "exact" mode are built from, in the call form of backends/reference.py's."""

    @staticmethod
    def tapsum_output(a, b, x, w, stride, padding, dilation, groups, fn):
        return _ops.adder_conv2d_tapsum_output(a, b, x, w, *_conf(stride, padding, dilation, groups), fn)

    @staticmethod
    def tapsum_input(g, x, w, stride, padding, dilation, groups, fn):
        return _ops.adder_conv2d_tapsum_input(g.contiguous(), x, w, *_conf(stride, padding, dilation, groups), fn)

    @staticmethod
    def tapsum_weight(g, a, x, w, stride, padding, dilation, groups, fn):
        return _ops.adder_conv2d_tapsum_weight(g.contiguous(), a, x, w, *_conf(stride, padding, dilation, groups), fn)


TAP_SUMS = TapSums


@torch.library.register_fake("addernet::adder_conv2d_tapsum_output")
def _(a, b, input, weight, stride, padding, dilation, groups, fn):
    name = "adder_conv2d_tapsum_output"
    return input.new_empty(checks.out_shape(input, weight, stride, padding, dilation, groups, name))


@torch.library.register_fake("addernet::adder_conv2d_tapsum_input")
def _(grad_output, input, weight, stride, padding, dilation, groups, fn):
    return input.new_empty(input.shape)


@torch.library.register_fake("addernet::adder_conv2d_tapsum_weight")
def _(grad_output, a, input, weight, stride, padding, dilation, groups, fn):
    return weight.new_empty(weight.shape)


def _third_order_refused(ctx, grad):
    raise RuntimeError(
        "addernet: third-order gradients through the adder op are not implemented on the native "
        "backend (first and second order are); use backend='reference' for higher orders"
    )


# Third order: the tap sums are not differentiated. Asked to, they say so, rather than let torch
# warn about a missing autograd kernel and carry on with a wrong (dropped) gradient.
for _name in ("tapsum_output", "tapsum_input", "tapsum_weight"):
    torch.library.register_autograd(f"addernet::adder_conv2d_{_name}", _third_order_refused)

# The backward is differentiable too (double backward: IGAM, gradient penalties): its
# vector-Jacobian products are in backends/grad2.py, built from the three tap sums.
grad2.register_backward_autograd("addernet::adder_conv2d_backward", TAP_SUMS)


# ---------------------------------------------------------------------------------- exact

def _native_forward(input, weight, stride, padding, dilation, groups):
    return _ops.adder_conv2d(input, weight, stride, padding, dilation, groups)


# grad_mode="exact": the same forward under an op of its own, whose backward is sign-based.
_exact = grad2.define_exact("addernet::adder_conv2d_exact", _native_forward, TAP_SUMS)


def adder_conv2d_exact(x, weight, stride, padding, dilation, groups):
    """The forward of ``adder_conv2d``, with the true (sign) gradients of the L1 form."""
    return _ops.adder_conv2d_exact(x, weight, *_conf(stride, padding, dilation, groups))


# ---------------------------------------------------------------------------------- fused

def adder_conv2d_fused(x, weight, scale, shift, stride, padding, dilation, groups, relu):
    """relu?(scale * adder(x, w) + shift) in one pass: a BatchNorm folded into the epilogue."""
    return _ops.adder_conv2d_fused(x, weight, scale, shift, *_conf(stride, padding, dilation, groups), bool(relu))


@torch.library.register_fake("addernet::adder_conv2d_fused")
def _(input, weight, scale, shift, stride, padding, dilation, groups, relu):
    name = "adder_conv2d_fused"
    shape = checks.out_shape(input, weight, stride, padding, dilation, groups, name)
    checks.check_epilogue(scale, shape[1], input, "scale", name)
    checks.check_epilogue(shift, shape[1], input, "shift", name)
    return input.new_empty(shape)


def _fused_setup_context(ctx, inputs, output):
    input, weight, scale, shift, stride, padding, dilation, groups, relu = inputs
    ctx.save_for_backward(input, weight, scale, shift, output)
    ctx.conf = (stride, padding, dilation, groups)
    ctx.relu = relu


def _fused_backward(ctx, grad):
    """The fused op is meant for inference, but it is differentiable: y = relu?(s * z + b) with
    z = adder(x, w) recomputed in the backward, through ops that are themselves differentiable."""
    input, weight, scale, shift, out = ctx.saved_tensors
    needs = ctx.needs_input_grad
    if ctx.relu:
        grad = grad * (out > 0).to(grad.dtype)
    gz = grad if scale is None else grad * scale.view(1, -1, 1, 1)
    gx = gw = gs = gb = None
    if needs[0] or needs[1]:
        mask = [grad2.engine_will_use(ctx, 0), grad2.engine_will_use(ctx, 1)]
        gx, gw = _ops.adder_conv2d_backward(gz.contiguous(), input, weight, *ctx.conf, mask)
        gx, gw = (gx if mask[0] else None), (gw if mask[1] else None)
    if scale is not None and needs[2]:
        z = _ops.adder_conv2d(input, weight, *ctx.conf)
        gs = (grad * z).sum((0, 2, 3))
    if shift is not None and needs[3]:
        gb = grad.sum((0, 2, 3))
    return gx, gw, gs, gb, None, None, None, None, None


torch.library.register_autograd("addernet::adder_conv2d_fused", _fused_backward, setup_context=_fused_setup_context)
