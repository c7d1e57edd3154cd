"""Batched, seeded augmentations of image tensors (N, C, H, W), on CPU or GPU, without torchvision.

Images are in pixel space, [0, 1] (``make_loaders(..., normalize=False)``): the colour ops clamp
to that range, and the geometric ones resample bilinearly (a convex combination of pixels) or
move pixels, so every op returns its input's shape (``random_resized_crop``: the ``size`` asked
for), dtype and range. Floating dtypes only; float16/bfloat16 are computed in float32.

Randomness is per image and comes from ``generator`` (a ``torch.Generator``; the global RNG when
None). Numbers are drawn on the generator's device and then moved, so a seeded CPU generator
gives the same augmentation on CPU and GPU.

One-channel images: ``grayscale`` is the identity, saturation jitter is the identity (an image's
gray is itself), and contrast blends with the image's mean intensity, as for colour images.
Colour ops take 1 or 3 channels.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["rot90", "color_jitter", "grayscale", "random_resized_crop", "scale_aspect", "hflip"]

# ITU-R BT.601 luma, the weights PIL and torchvision use for "L".
_LUMA = (0.299, 0.587, 0.114)


def _check(x: torch.Tensor, colour: bool = False) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"augmentations take a batch (N, C, H, W), got {tuple(getattr(x, 'shape', ()))}")
    if not x.is_floating_point():
        raise TypeError(f"augmentations take floating images in [0, 1], got {x.dtype}")
    if colour and x.shape[1] not in (1, 3):
        raise ValueError(f"colour ops take 1 or 3 channels, got {x.shape[1]}")


def _rand(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    where = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=where, dtype=torch.float32).to(device)


def _uniform(n, lo, hi, generator, device):
    return lo + (hi - lo) * _rand(n, generator, device)


def _work(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def rot90(x: torch.Tensor, k) -> torch.Tensor:
    """Rotate by k quarter turns counter-clockwise. ``k``: an int for the whole batch, or one per
    image (a sequence or tensor of N ints; the images must then be square)."""
    _check(x)
    if isinstance(k, int):
        return torch.rot90(x, k % 4, dims=(-2, -1))
    k = torch.as_tensor(k, device=x.device).long().flatten() % 4
    if k.numel() != x.shape[0]:
        raise ValueError(f"rot90: {k.numel()} rotations for {x.shape[0]} images")
    if x.shape[-2] != x.shape[-1]:
        raise ValueError(f"rot90 per image needs square images, got {x.shape[-2]}x{x.shape[-1]}")
    out = x.clone()
    for q in range(1, 4):
        idx = (k == q).nonzero().flatten()
        if idx.numel():
            out[idx] = torch.rot90(x[idx], q, dims=(-2, -1))
    return out


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (BT.601) copied to every channel, so the shape is kept. The identity for 1 channel."""
    _check(x, colour=True)
    if x.shape[1] == 1:
        return x.clone()
    w = torch.tensor(_LUMA, device=x.device, dtype=_work(x).dtype).view(1, 3, 1, 1)
    gray = (_work(x) * w).sum(1, keepdim=True).clamp(0, 1)
    return gray.expand_as(x).to(x.dtype).contiguous()


def _factors(n, amount, generator, device, what):
    if amount < 0:
        raise ValueError(f"{what} must be >= 0, got {amount}")
    return _uniform(n, max(0.0, 1.0 - amount), 1.0 + amount, generator, device).view(-1, 1, 1, 1)


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image, factors drawn uniformly from [max(0, 1 - a), 1 + a], applied in this order:
    brightness (x * f), contrast (blend with the image's mean luma), saturation (blend with each
    pixel's luma; the identity on 1 channel); each result clamped to [0, 1]. Three factors are
    always drawn (also for an amount of 0), so a seed gives the same stream whatever is switched off.
    """
    _check(x, colour=True)
    y = _work(x)
    n, dev = x.shape[0], x.device
    fb = _factors(n, brightness, generator, dev, "brightness").to(y.dtype)
    fc = _factors(n, contrast, generator, dev, "contrast").to(y.dtype)
    fs = _factors(n, saturation, generator, dev, "saturation").to(y.dtype)
    if brightness:
        y = (y * fb).clamp(0, 1)
    if contrast:
        mean = grayscale(y)[:, :1].mean((1, 2, 3), keepdim=True)
        y = ((y - mean) * fc + mean).clamp(0, 1)
    if saturation and y.shape[1] == 3:
        gray = grayscale(y)
        y = ((y - gray) * fs + gray).clamp(0, 1)
    return y.to(x.dtype)


def hflip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    _check(x)
    flip = (_rand(x.shape[0], generator, x.device) < p).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def _sample_affine(x: torch.Tensor, cy, cx, sy, sx, size, padding_mode: str) -> torch.Tensor:
    """Resample: output pixel at normalised (u, v) in [-1, 1] reads input (cx + sx u, cy + sy v)."""
    y = _work(x)
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=y.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, [n, x.shape[1], *size], align_corners=False)
    out = F.grid_sample(y, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    if y.numel():  # bilinear weights are convex, but their float sum can overshoot by an ulp
        lo, hi = y.amin(), y.amax()
        out = out.clamp(lo.clamp(max=0) if padding_mode == "zeros" else lo, hi)
    return out.to(x.dtype)


def _size(size, x):
    if size is None:
        return tuple(x.shape[-2:])
    if isinstance(size, int):
        return (size, size)
    h, w = size
    return (int(h), int(w))


def random_resized_crop(x: torch.Tensor, size=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image, a crop of a random area fraction in ``scale`` and aspect ratio (w/h,
    log-uniform) in ``ratio``, resized bilinearly to ``size`` (default: the input's H x W).
    As torchvision's RandomResizedCrop: 10 candidates per image, the first that fits is used,
    else a centre crop at the clamped ratio. Crop boxes are continuous, not rounded to pixels.
    Shrinking is not antialiased."""
    _check(x)
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"need 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
    n, (h, w), dev = x.shape[0], x.shape[-2:], x.device
    tries = 10
    area = _uniform(n * tries, scale[0], scale[1], generator, dev).view(n, tries) * (h * w)
    logr = _uniform(n * tries, math.log(ratio[0]), math.log(ratio[1]), generator, dev).view(n, tries)
    cw, ch = (area * logr.exp()).sqrt(), (area / logr.exp()).sqrt()
    ok = (cw <= w) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=dev))
    # Fallback: the whole image cut to the nearest allowed ratio, centred.
    in_ratio = w / h
    r = min(max(in_ratio, ratio[0]), ratio[1])
    fw, fh = (w, w / r) if in_ratio > r else (h * r, h)
    fw, fh = min(fw, w), min(fh, h)
    pick = first.clamp(min=0).view(n, 1)
    cw = torch.where(first >= 0, cw.gather(1, pick).flatten(), torch.full((n,), float(fw), device=dev))
    ch = torch.where(first >= 0, ch.gather(1, pick).flatten(), torch.full((n,), float(fh), device=dev))
    uy, ux = _rand(n, generator, dev), _rand(n, generator, dev)
    top = torch.where(first >= 0, uy * (h - ch), (h - ch) / 2)
    left = torch.where(first >= 0, ux * (w - cw), (w - cw) / 2)
    return _sample_affine(x, (2 * top + ch) / h - 1, (2 * left + cw) / w - 1, ch / h, cw / w,
                          _size(size, x), "border")


def scale_aspect(x: torch.Tensor, scale=(0.8, 1.25), ratio=(3 / 4, 4 / 3),
                 generator: torch.Generator | None = None, fill: str = "zeros") -> torch.Tensor:
    """Per image, zoom about the centre by a factor in ``scale`` (uniform) and stretch to an aspect
    ratio (w/h, log-uniform) in ``ratio``, keeping the image's size: a factor above 1 enlarges
    the content (its edges leave the frame), below 1 shrinks it and the border is filled with
    zeros (``fill='zeros'``) or the nearest edge pixel (``fill='border'``)."""
    _check(x)
    if not (0 < scale[0] <= scale[1]) or not (0 < ratio[0] <= ratio[1]):
        raise ValueError(f"need 0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1], got {scale}, {ratio}")
    if fill not in ("zeros", "border"):
        raise ValueError(f"fill must be 'zeros' or 'border', got {fill!r}")
    n, dev = x.shape[0], x.device
    s = _uniform(n, scale[0], scale[1], generator, dev)
    r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), generator, dev).exp().sqrt()
    zeros = torch.zeros(n, device=dev)
    # Content width is scaled by s * sqrt(r), height by s / sqrt(r): the sampling step is the inverse.
    return _sample_affine(x, zeros, zeros, r / s, 1 / (s * r), tuple(x.shape[-2:]), fill)
