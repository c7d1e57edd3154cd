"""Functional form of the uint8 adder convolution, and the shared-grid quantisation it relies on.

X and W are quantised on one grid, x = s*(qx - z) and w = s*(qw - z), so that
|x - w| = s*|qx - qw| exactly and the whole reduction runs on bytes.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

from . import backends
from ._validation import pair

__all__ = ["adder_conv2d_u8", "check_finite", "shared_qparams", "quantize_tensor", "dequantize_tensor"]


def shared_qparams(lo: float, hi: float) -> tuple[float, int]:
    """Scale and zero point of the uint8 grid over [lo, hi], widened to hold 0 exactly.

    0 must be a grid point: padded taps are zero in float and must be exactly the zero point here.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (torch.isfinite(torch.tensor([lo, hi])).all()):
        raise ValueError(f"quantisation range [{lo}, {hi}] is not finite")
    scale = (hi - lo) / 255.0
    if scale == 0.0:  # all zeros: any scale represents them
        return 1.0, 0
    zero_point = int(min(255, max(0, round(-lo / scale))))
    return scale, zero_point


def check_finite(t: torch.Tensor, what: str = "input") -> None:
    """The quantise boundary's rule: no byte stands for NaN or inf, so such a value is an error here
    rather than a finite answer later (NaN.to(uint8) is whatever the cast gives)."""
    if t.is_floating_point() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} holds NaN or inf, which the uint8 grid cannot represent")


def quantize_tensor(t: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """clamp(round_half_even(t / scale) + zero_point, 0, 255) as uint8 (the op's own arithmetic).

    Raises ValueError on NaN or inf (see ``check_finite``)."""
    check_finite(t, "quantize_tensor(): the tensor")
    return torch.clamp(torch.round(t.float() / scale) + zero_point, 0, 255).to(torch.uint8)


def dequantize_tensor(q: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    return (q.to(torch.float32) - zero_point) * scale


def adder_conv2d_u8(
    input: torch.Tensor,
    weight: torch.Tensor,
    zero_point: int,
    scale: torch.Tensor | None = None,
    shift: torch.Tensor | None = None,
    stride: Union[int, Sequence[int]] = 1,
    padding: Union[int, Sequence[int]] = 0,
    dilation: Union[int, Sequence[int]] = 1,
    groups: int = 1,
    relu: bool = False,
    *,
    out_scale: float | None = None,
    out_zero_point: int = 0,
    input_scale: float | None = None,
) -> torch.Tensor:
    """acc = sum |qx - qw| over each patch, padded taps holding ``zero_point`` (they add |w|).

    Returns int32 ``-acc`` with no epilogue; float32 ``relu?(-acc * scale + shift)`` with one;
    uint8 ``clamp(round(that / out_scale) + out_zero_point, 0, 255)`` with ``out_scale``. A float32
    ``input`` is quantised first with ``input_scale`` and ``zero_point``. Runs the native kernel
    when built (CPU), else the int64 reference.
    """
    args = (input, weight, int(zero_point), scale, shift, list(pair(stride, "stride")),
            list(pair(padding, "padding")), list(pair(dilation, "dilation")), int(groups), bool(relu))
    kw = dict(out_scale=None if out_scale is None else float(out_scale), out_zero_point=int(out_zero_point),
              input_scale=None if input_scale is None else float(input_scale))
    return backends.op("adder_conv2d_u8", None, input.device)(*args, **kw)
