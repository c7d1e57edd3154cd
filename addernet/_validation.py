"""Argument normalisation and shape checks shared by every backend.

Errors name the offending shapes, so that a user who swapped an argument sees which one.
"""
from __future__ import annotations

from typing import Sequence, Union

import torch

IntOr2 = Union[int, Sequence[int]]


def pair(value: IntOr2, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    t = tuple(int(v) for v in value)
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return t  # type: ignore[return-value]


def out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) zero padding that keeps the size at stride 1, as conv2d's 'same'.

    As in PyTorch, an even total goes half each side and the extra one goes right/bottom.
    """
    pads = []
    for k, d in ((kernel[1], dilation[1]), (kernel[0], dilation[0])):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


INT64_MAX = 2**63 - 1


def check_int64(h, w, kernel, stride, padding, dilation, groups) -> None:
    """Refuses sizes whose arithmetic overflows the kernels' 64-bit integers (padding 2^62 would
    otherwise come out as a 0x0 output, and a stride past 2^63 cannot be passed at all)."""
    for name, value in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        if max(value) > INT64_MAX:
            raise ValueError(f"{name} {value} does not fit in a 64-bit integer")
    if groups > INT64_MAX:
        raise ValueError(f"groups={groups} does not fit in a 64-bit integer")
    for size, k, p, d in zip((h, w), kernel, padding, dilation):
        if size + 2 * p > INT64_MAX or d * (k - 1) >= INT64_MAX:
            raise ValueError(
                f"padding {padding} or dilation {dilation} with input size {h}x{w} and kernel "
                f"{kernel[0]}x{kernel[1]} overflows 64-bit size arithmetic"
            )


def check_args(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
) -> None:
    if input.dim() != 4:
        raise ValueError(
            f"adder_conv2d expects a 4-D input (N, C, H, W), got shape {tuple(input.shape)}"
        )
    if weight.dim() != 4:
        raise ValueError(
            f"adder_conv2d expects a 4-D weight (out_channels, in_channels/groups, kH, kW), "
            f"got shape {tuple(weight.shape)}"
        )
    if input.dtype != weight.dtype:
        raise TypeError(
            f"adder_conv2d: input dtype {input.dtype} and weight dtype {weight.dtype} differ"
        )
    if not input.dtype.is_floating_point:
        raise TypeError(f"adder_conv2d supports floating-point tensors, got {input.dtype}")
    if input.device != weight.device:
        raise RuntimeError(
            f"adder_conv2d: input is on {input.device} but weight is on {weight.device}"
        )
    if groups < 1:
        raise ValueError(f"groups must be positive, got {groups}")
    if min(stride) < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be positive, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    if c % groups != 0:
        raise ValueError(f"groups={groups} does not divide the input's {c} channels")
    if o % groups != 0:
        raise ValueError(f"groups={groups} does not divide the weight's {o} output channels")
    if cg * groups != c:
        raise ValueError(
            f"input has {c} channels but weight {tuple(weight.shape)} with groups={groups} "
            f"expects {cg * groups}"
        )
    if kh < 1 or kw < 1:
        raise ValueError(f"kernel size must be positive, got weight shape {tuple(weight.shape)}")
    if o < 1:
        # As F.conv2d; zero input channels, though, are an empty sum (zeros), as in F.conv2d.
        raise ValueError(f"weight {tuple(weight.shape)} has no output channels (dimension 0 is 0)")
    check_int64(h, w, (kh, kw), stride, padding, dilation, groups)
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"output size would be {oh}x{ow} for input {tuple(input.shape)}, kernel "
            f"{kh}x{kw}, stride {stride}, padding {padding}, dilation {dilation}: it must be >= 1"
        )
    if bias is not None:
        if bias.shape != (o,):
            raise ValueError(f"bias must have shape ({o},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype or bias.device != input.device:
            raise TypeError(
                f"bias ({bias.dtype}, {bias.device}) must match input ({input.dtype}, {input.device})"
            )
