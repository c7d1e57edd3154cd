"""FLOP formulas for the adder ops, so ``torch.utils.flop_counter.FlopCounterMode`` counts them.

Convention (``taps`` = N * O * OH * OW * (C / groups) * KH * KW, one |x - w| term each):

- ``adder_conv2d`` forward: 2 * taps, a subtraction and an accumulation per tap, the figure
  FlopCounterMode gives a convolution of the same shape (2 per multiply-accumulate). These are
  additions, not multiplications; the absolute value (a sign-bit clear) is not counted here.
- ``adder_conv2d_fused``: 2 * taps, plus one per output for the scale and one for the shift
  when given (the folded BatchNorm); the ReLU is not counted, as FlopCounterMode does not count it.
- ``adder_conv2d_backward``, the paper's gradients:
  - input: 5 * taps: per tap W - X, a clamp to [-1, 1] (a max and a min) and a multiply-add with G.
  - weight: 2 * taps + N*O*OH*OW + 2 * O*K (K = C/groups * KH * KW): the kernel computes
    G @ Xcol^T (a convolution weight gradient, 2 * taps), the sum of G per output channel, and
    subtracts W * sum(G) (a multiply and a subtraction per weight).
  A gradient masked out by ``output_mask`` costs nothing.
"""
from __future__ import annotations

import math

import torch


_registered = False


def ops_built() -> bool:
    """Whether the ``torch.ops.addernet`` ops these formulas count exist (a backend registered them)."""
    return hasattr(torch.ops.addernet, "adder_conv2d_fused")


def _taps(x_shape, w_shape, out_shape) -> int:
    # The weight's dim 1 is already C / groups, so grouping needs no special case.
    return out_shape[0] * out_shape[1] * math.prod(out_shape[2:]) * math.prod(w_shape[1:])


def forward_flops(x_shape, w_shape, out_shape) -> int:
    return 2 * _taps(x_shape, w_shape, out_shape)


def fused_flops(x_shape, w_shape, out_shape, scale: bool, shift: bool) -> int:
    return forward_flops(x_shape, w_shape, out_shape) + (int(scale) + int(shift)) * math.prod(out_shape)


def backward_flops(grad_out_shape, x_shape, w_shape, output_mask) -> int:
    taps = _taps(x_shape, w_shape, grad_out_shape)
    flops = 0
    if output_mask[0]:
        flops += 5 * taps
    if output_mask[1]:
        flops += 2 * taps + math.prod(grad_out_shape) + 2 * math.prod(w_shape)
    return flops


def register() -> bool:
    """Registers the formulas once; returns whether they are registered. Without the native
    extension the ops do not exist, and this does nothing."""
    global _registered
    if _registered or not ops_built():
        return _registered
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    ops = torch.ops.addernet
    if ops.adder_conv2d in flop_registry:  # registered by another copy of this module
        _registered = True
        return True

    @register_flop_formula(ops.adder_conv2d)
    def _fwd(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return forward_flops(x_shape, w_shape, out_shape)

    @register_flop_formula(ops.adder_conv2d_fused)
    def _fused(x_shape, w_shape, scale, shift, *args, out_shape=None, **kwargs) -> int:
        return fused_flops(x_shape, w_shape, out_shape, scale is not None, shift is not None)

    @register_flop_formula(ops.adder_conv2d_backward)
    def _bwd(grad_out_shape, x_shape, w_shape, stride, padding, dilation, groups, output_mask,
             out_shape=None, **kwargs) -> int:
        return backward_flops(grad_out_shape, x_shape, w_shape, output_mask)

    _registered = True
    return True
