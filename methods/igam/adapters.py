"""Input adapters: differentiable maps from the student's image size to the teacher's.

A teacher whose input size differs sees ``adapter(x)``; its input gradient is still taken with
respect to ``x``, the student-size image (``gradients.input_gradient(..., adapter=...)``), so
J_s and J_t live in the same space. Both maps are affine in x, as the paper's A is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ADAPTERS = ("upsize", "crop_pad")


def _size2(size) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"an adapter's output size must be positive, got {size!r}")
    return int(h), int(w)


class Upsize(nn.Module):
    """Resize to ``size`` (H, W) by interpolation (bilinear by default; any size, up or down)."""

    def __init__(self, size, mode: str = "bilinear", align_corners: bool = False):
        super().__init__()
        if mode not in ("bilinear", "nearest", "bicubic", "area"):
            raise ValueError(f"mode must be bilinear, nearest, bicubic or area, got {mode!r}")
        self.size, self.mode = _size2(size), mode
        self.align_corners = align_corners if mode in ("bilinear", "bicubic") else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        return f"size={self.size}, mode={self.mode!r}"


class CropPad(nn.Module):
    """Centre-crop each spatial side that is too large and zero-pad each that is too small, to ``size``.
    ``offset`` (top, left) is where the crop starts in the image, or how many zero rows/columns go
    before the image; the default centres it (an odd difference puts the extra at the bottom/right)."""

    def __init__(self, size, offset: tuple[int, int] | None = None, value: float = 0.0):
        super().__init__()
        self.size, self.offset, self.value = _size2(size), offset, float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for axis, target in ((2, self.size[0]), (3, self.size[1])):
            size = x.shape[axis]
            diff = abs(target - size)
            at = diff // 2 if self.offset is None else int(self.offset[axis - 2])
            if not 0 <= at <= diff:
                raise ValueError(f"offset {self.offset} does not fit a side of {size} brought to {target}")
            if size > target:
                x = x.narrow(axis, at, target)   # crop: the first row/column kept
                pads.append((0, 0))
            else:
                pads.append((at, diff - at))     # pad: rows/columns of zeros before the image
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom), value=self.value)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}" + (f", offset={self.offset}" if self.offset is not None else "")


class RepeatChannels(nn.Module):
    """Grey to colour (1 -> C channels) by repetition; the gradient sums back over the copies."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.channels:
            return x
        if x.shape[1] != 1:
            raise ValueError(f"can only repeat a 1-channel image to {self.channels} channels, got {x.shape[1]}")
        return x.expand(-1, self.channels, -1, -1)


def make_adapter(student_size, teacher_size, how: str = "upsize") -> nn.Module:
    """An adapter from student images (C, H, W) to the teacher's (C', H', W'); nn.Identity when they
    match. ``how``: 'upsize' (interpolate) or 'crop_pad'."""
    if how not in ADAPTERS:
        raise ValueError(f"adapter must be one of {', '.join(map(repr, ADAPTERS))}, got {how!r}")
    (cs, *hw_s), (ct, *hw_t) = tuple(student_size), tuple(teacher_size)
    parts: list[nn.Module] = []
    if cs != ct:
        if cs != 1:
            raise ValueError(f"cannot adapt {cs} channels to {ct}: only 1 -> C is supported")
        parts.append(RepeatChannels(ct))
    if tuple(hw_s) != tuple(hw_t):
        parts.append(Upsize(hw_t) if how == "upsize" else CropPad(hw_t))
    if not parts:
        return nn.Identity()
    return parts[0] if len(parts) == 1 else nn.Sequential(*parts)
