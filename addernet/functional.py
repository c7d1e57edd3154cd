"""Functional form of the adder convolution, mirroring ``torch.nn.functional.conv2d``."""
from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

from . import backends
from .backends import grad2
from ._validation import check_args, pair, same_padding

__all__ = ["adder_conv2d", "adder_linear"]


def resolve_padding(input, weight, padding, stride, dilation):
    """Turns conv2d-style padding (ints, pairs, 'same', 'valid') into a symmetric (ph, pw).

    'same' with an even kernel pads one more on the right/bottom, as conv2d does; those zeros are
    padded here explicitly, and contribute |w| exactly like the op's own padding.
    """
    if not isinstance(padding, str):
        return input, pair(padding, "padding")
    if padding == "valid":
        return input, (0, 0)
    if padding != "same":
        raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    if stride != (1, 1):
        raise ValueError("padding='same' is not supported for strided adder convolutions")
    left, right, top, bottom = same_padding(tuple(weight.shape[2:]), dilation)
    if left != right or top != bottom:
        return F.pad(input, (left, right, top, bottom)), (0, 0)
    return input, (top, left)


def adder_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: Union[int, Sequence[int]] = 1,
    padding: Union[int, Sequence[int], str] = 0,
    dilation: Union[int, Sequence[int]] = 1,
    groups: int = 1,
    *,
    backend: str | None = None,
    grad_mode: str = "paper",
) -> torch.Tensor:
    """Y[n,o,i,j] = -sum_{c,u,v} |Xpad[n, g*Cg+c, i*s+u*d, j*s+v*d] - W[o,c,u,v]| + bias[o].

    Zero padding takes part, as in the official AdderNet code: a padded tap adds |w|.
    Gradients are the paper's, unscaled: grad_W = sum G*(X-W), grad_X = sum G*clamp(W-X, -1, 1),
    grad_bias = sum G. ``AdderConv2d`` adds the adaptive learning-rate scaling on top.
    ``grad_mode="exact"`` gives instead the true gradients of the L1 form, grad_X = sum G*sign(W-X)
    and grad_W = sum G*sign(X-W) (for attacks that must not ride the HardTanh surrogate, and
    comparisons as in the paper's Table 4); the forward is the same.
    Both modes are twice differentiable on every backend (see backends/grad2.py): "paper" through
    h = clamp and its derivative 1[|W-X| < 1], "exact" through G only (sign has zero derivative
    almost everywhere).
    ``padding`` takes ints, pairs, 'valid' or 'same' (stride 1 only, as in conv2d).
    """
    stride_, dilation_ = pair(stride, "stride"), pair(dilation, "dilation")
    input, padding_ = resolve_padding(input, weight, padding, stride_, dilation_)
    check_args(input, weight, bias, stride_, padding_, dilation_, groups)
    grad2.check_grad_mode(grad_mode)
    key = "adder_conv2d_exact" if grad_mode == "exact" else "adder_conv2d"
    out = backends.op(key, backend, input.device)(input, weight, stride_, padding_, dilation_, groups)
    if bias is not None and out.shape[1] != 0:  # conv2d ignores the bias of a (N, 0, ...) output too
        out = out + bias.view(1, -1, 1, 1)
    return out


def adder_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Y[..., o] = -sum_i |X[..., i] - W[o, i]| + bias[o], in the form of ``torch.nn.functional.linear``.

    Gradients are the paper's, as in ``adder_conv2d``: grad_W = sum G*(X-W) (full precision),
    grad_X = sum G*clamp(W-X, -1, 1) (HardTanh). Leading dimensions of ``input`` are batch dims.
    """
    if input.dim() < 1 or weight.dim() != 2 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"adder_linear: input {tuple(input.shape)} and weight {tuple(weight.shape)} do not "
                         f"match: expected input (..., {weight.shape[-1] if weight.dim() == 2 else 'I'}) and "
                         "weight (O, I)")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"adder_linear: bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
    lead = input.shape[:-1]
    x = input.reshape(-1, input.shape[-1])
    out = backends.op("adder_linear", backend, input.device)(x, weight).view(*lead, weight.shape[0])
    return out if bias is None else out + bias
