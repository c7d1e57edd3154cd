"""The perturbations g(x) a BoWNet student sees: batched, seeded tensor augmentations on images in
pixel space [0, 1], from ``addernet.data.augment``."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from addernet.data import augment

# Digits change meaning under a mirror (2, 5, 7...), so flips are off for these sets, and their crops
# stay large: a crop of scale >= 0.8 keeps about the area a CIFAR pad-4 random crop keeps (>= 0.77),
# the mild crop BoWNet's small-image recipe uses. On mnist5k, crops of scale 0.5-1 made the student's
# features worse than RotNet's (methods/README.md, BoWNet, "what was tried").
DIGIT_DATA = ("mnist5k", "mnist", "digits")
DIGIT_CROP_SCALE = (0.8, 1.0)


@dataclass
class Perturbation:
    """Random resized crop (to the input size), then brightness/contrast (and saturation) jitter with
    probability ``jitter_p``, random grayscale with ``gray_p``, horizontal flip with ``hflip_p``.

    Saturation and grayscale need 3 channels; on 1-channel images they are skipped (``for_data``
    sets them to 0). OBoW's values: jitter 0.4 with p 0.8, grayscale p 0.2, flip 0.5.
    """
    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    jitter_p: float = 0.8
    gray_p: float = 0.2
    hflip_p: float = 0.5

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        for name in ("jitter_p", "gray_p", "hflip_p"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {p}")

    @classmethod
    def for_data(cls, channels: int, data: str | None = None, **overrides) -> "Perturbation":
        """The defaults, with what does not apply to this data switched off."""
        kw = {}
        if channels != 3:
            kw.update(saturation=0.0, gray_p=0.0)
        if data is not None and str(data).lower() in DIGIT_DATA:
            kw.update(hflip_p=0.0, crop_scale=DIGIT_CROP_SCALE)
        kw.update(overrides)
        return cls(**kw)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        out = augment.random_resized_crop(x, (h, w), scale=self.crop_scale, ratio=self.crop_ratio,
                                          generator=generator)
        if self.jitter_p > 0 and (self.brightness or self.contrast or self.saturation):
            jittered = augment.color_jitter(out, brightness=self.brightness, contrast=self.contrast,
                                            saturation=self.saturation if c == 3 else 0.0, generator=generator)
            out = _where(_coin(n, self.jitter_p, generator, x.device), jittered, out)
        if self.gray_p > 0 and c == 3:
            out = _where(_coin(n, self.gray_p, generator, x.device), augment.grayscale(out), out)
        if self.hflip_p > 0:
            out = augment.hflip(out, p=self.hflip_p, generator=generator)
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coin(n: int, p: float, generator, device) -> torch.Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return (torch.rand(n, generator=generator, device=gen_device) < p).to(device)


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, *([1] * (a.dim() - 1))), a, b)
