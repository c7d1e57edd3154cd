"""Tensor image transforms built from plain torch ops.

torchvision is deliberately not used: beside a CPU-only or source-built torch it
is often missing or ABI-mismatched, and these few transforms are all the paper's
recipes need.

Every transform after ``to_tensor`` takes and returns a float CxHxW tensor.
Random ones draw from torch's *global* RNG, so ``torch.manual_seed`` in the main
process, and DataLoader's per-worker seeding in workers, make them reproducible.
Classes (not lambdas) keep the pipelines picklable for spawn-started workers.
"""

import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _pair(size):
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def to_tensor(img):
    """uint8 HW / HWC array -> float CxHxW in [0, 1]; float arrays are taken as
    already scaled (the sklearn digits are stored that way)."""
    if isinstance(img, torch.Tensor):
        t = img
    else:
        arr = np.asarray(img)
        if not (arr.flags.writeable and arr.flags.c_contiguous):
            # Cached/PIL arrays are read-only; torch must not alias them.
            arr = np.array(arr)
        t = torch.from_numpy(arr)
    if t.ndim == 2:
        t = t.unsqueeze(0)
    elif t.ndim == 3:
        t = t.permute(2, 0, 1)
    else:
        raise ValueError(f"expected an HW or HWC image, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    return t.float().contiguous()


class ToTensor:
    def __call__(self, img):
        return to_tensor(img)

    def __repr__(self):
        return "ToTensor()"


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


class Normalize(nn.Module):
    """(x - mean) / std per channel, on one image (C, H, W) or a batch (N, C, H, W).

    An ``nn.Module`` so that it can also sit in front of a model that is fed pixel-space
    [0, 1] data (``nn.Sequential(Normalize(info.mean, info.std), model)``): attacks and
    augmentations then work on pixels while the model still sees normalised input. The
    statistics are buffers (they follow ``.to(device)``) that are not saved in state dicts.
    """

    def __init__(self, mean, std):
        super().__init__()
        mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean.numel() == 0 or mean.shape != std.shape:
            raise ValueError(f"mean and std need one value per channel, got {mean.tolist()} and {std.tolist()}")
        if (std <= 0).any():
            raise ValueError(f"std must be positive, got {std.tolist()}")
        self.register_buffer("mean", mean.view(-1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(-1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean) / self.std

    def extra_repr(self):
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class RandomHorizontalFlip:
    def __init__(self, p=0.5):
        self.p = p

    def __call__(self, x):
        if torch.rand(1).item() < self.p:
            return x.flip(-1)
        return x

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Zero padding happens in [0, 1] pixel space (before Normalize), i.e. black
    borders, matching the torchvision recipe the paper's numbers came from."""

    def __init__(self, size, padding=0):
        self.size = _pair(size)
        self.padding = int(padding)

    def __call__(self, x):
        if self.padding:
            p = self.padding
            x = F.pad(x, (p, p, p, p))
        th, tw = self.size
        h, w = x.shape[-2:]
        if h < th or w < tw:
            raise ValueError(f"crop {self.size} larger than padded image {(h, w)}")
        top = int(torch.randint(0, h - th + 1, (1,)).item())
        left = int(torch.randint(0, w - tw + 1, (1,)).item())
        return x[..., top:top + th, left:left + tw]

    def __repr__(self):
        return f"RandomCrop(size={self.size}, padding={self.padding})"


def _resize(x, size):
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    # Antialiasing only matters (and only differs) when shrinking.
    down = size[0] < h or size[1] < w
    out = F.interpolate(x.unsqueeze(0), size=size, mode="bilinear",
                        align_corners=False, antialias=down)
    return out.squeeze(0)


class Resize:
    """Int size: shorter side to ``size``, aspect kept (torchvision semantics)."""

    def __init__(self, size):
        self.size = size

    def __call__(self, x):
        h, w = x.shape[-2:]
        if isinstance(self.size, numbers.Integral):
            s = int(self.size)
            if h <= w:
                target = (s, int(s * w / h))
            else:
                target = (int(s * h / w), s)
        else:
            target = _pair(self.size)
        return _resize(x, target)

    def __repr__(self):
        return f"Resize({self.size})"


class CenterCrop:
    def __init__(self, size):
        self.size = _pair(size)

    def __call__(self, x):
        th, tw = self.size
        h, w = x.shape[-2:]
        if h < th or w < tw:
            ph, pw = max(th - h, 0), max(tw - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            h, w = x.shape[-2:]
        top = int(round((h - th) / 2.0))
        left = int(round((w - tw) / 2.0))
        return x[..., top:top + th, left:left + tw]

    def __repr__(self):
        return f"CenterCrop({self.size})"


class RandomResizedCrop:
    """Inception-style crop (torchvision's algorithm): up to 10 tries at a random
    area fraction and log-uniform aspect ratio, else a centred crop at the
    clamped ratio; the crop is then resized to ``size``."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)):
        self.size = _pair(size)
        self.scale = scale
        self.ratio = ratio

    def _params(self, h, w):
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * torch.empty(1).uniform_(*self.scale).item()
            aspect = math.exp(torch.empty(1).uniform_(*log_ratio).item())
            cw = int(round(math.sqrt(target_area * aspect)))
            ch = int(round(math.sqrt(target_area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,)).item())
                left = int(torch.randint(0, w - cw + 1, (1,)).item())
                return top, left, ch, cw
        in_ratio = w / h
        if in_ratio < min(self.ratio):
            cw, ch = w, int(round(w / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            ch, cw = h, int(round(h * max(self.ratio)))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def __call__(self, x):
        top, left, ch, cw = self._params(*x.shape[-2:])
        return _resize(x[..., top:top + ch, left:left + cw], self.size)

    def __repr__(self):
        return f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio})"


def recipe(kind, mean, std, augment, normalize=True):
    """The paper's per-family pipelines; ``kind`` is 'plain', 'cifar' or 'imagenet'.
    MNIST-like sets are never augmented (LeNet-5-BN takes the 28x28 input as is).
    ``normalize=False`` leaves the output in pixel space, [0, 1]."""
    if kind == "plain":
        steps = []
    elif kind == "cifar":
        steps = [RandomCrop(32, padding=4), RandomHorizontalFlip()] if augment else []
    elif kind == "imagenet":
        steps = [RandomResizedCrop(224), RandomHorizontalFlip()] if augment else [Resize(256), CenterCrop(224)]
    else:
        raise ValueError(f"unknown recipe {kind!r}")
    return Compose(steps + ([Normalize(mean, std)] if normalize else []))
