"""Stage 4: train N_cf from scratch on the pseudo-labels, with ClusterFit's augmentation family.

VISSL trains N_cf with RandomResizedCrop, ColorJitter and a horizontal flip. Here they are the
batched tensor augmentations of ``addernet.data.augment``, applied in pixel space [0, 1] inside the
training step and followed by the dataset's normalisation, so the loader can stay plain and the
same code runs on CPU, GPU and under DDP (each rank draws its own augmentations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from addernet.data import augment, make_loaders
from addernet.train import classification_step, fit

from .pseudo_labels import PseudoLabels, check_pseudo_labels


@dataclass
class CFAugment:
    """N_cf's augmentation on a pixel-space batch (N, C, H, W) in [0, 1].

    The defaults are the official family at ImageNet settings (crop scale 0.08..1, jitter 0.4);
    ``flip`` is for data where a mirror image is the same kind of image (not digits or text).
    """
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    flip: bool = True

    def __post_init__(self):
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} jitter must be >= 0, got {getattr(self, name)}")

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        x = augment.random_resized_crop(x, tuple(x.shape[-2:]), scale=tuple(self.crop_scale),
                                        ratio=tuple(self.crop_ratio), generator=generator)
        if self.brightness or self.contrast or self.saturation:
            x = augment.color_jitter(x, brightness=self.brightness, contrast=self.contrast,
                                     saturation=self.saturation if x.shape[1] == 3 else 0.0, generator=generator)
        if self.flip:
            x = augment.hflip(x, p=0.5, generator=generator)
        return x


class AugmentedStep:
    """An ``addernet.train`` step: augment the pixel-space batch, normalise it, then cross-entropy
    on the pseudo-labels (``classification_step``). Seeded per device, and per rank under DDP."""

    def __init__(self, aug: CFAugment, mean: Sequence[float], std: Sequence[float], seed: int = 0):
        self.aug, self.seed = aug, seed
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self._gens: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        g = self._gens.get(device)
        if g is None:
            import torch.distributed as dist
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            g = self._gens[device] = torch.Generator(device=device).manual_seed(self.seed * 1_000_003 + rank)
        return g

    def __call__(self, model: nn.Module, batch):
        x, y = batch[0], batch[1]
        x = self.aug(x, self._generator(x.device))
        x = (x - self.mean.to(x)) / self.std.to(x)
        return classification_step(model, (x, y))


def train_cf(model: nn.Module, data, pseudo: PseudoLabels, *, root=None, epochs: int = 30, batch_size: int = 256,
             lr: float = 0.1, weight_decay: float = 5e-4, aug: Optional[CFAugment] = None, device=None,
             seed: int = 0, out: Optional[str] = None, num_workers: int = 0, distributed: bool = False,
             progress: bool = True, log=print, limit_batches: Optional[int] = None):
    """Train ``model`` (freshly initialised, with ``pseudo.num_clusters`` outputs) on the train split of
    ``data`` (a dataset name with ``root``, or a dataset) labelled with ``pseudo``, through
    ``addernet.train.fit`` (SGD momentum 0.9, cosine schedule, checkpoints in ``out``). Returns the
    ``FitResult``. Run under ``torchrun`` with ``distributed=True`` for DDP."""
    aug = aug or CFAugment()
    train_loader, _, info = make_loaders(data, root, batch_size, num_workers, seed=seed, distributed=distributed,
                                         augment=False, labels=pseudo.labels, normalize=False)
    check_pseudo_labels(pseudo.labels, pseudo.centroids, len(train_loader.dataset))
    n_out = _num_outputs(model, info)
    if n_out is not None and n_out != pseudo.num_clusters:
        raise ValueError(f"N_cf has {n_out} outputs but there are {pseudo.num_clusters} clusters: "
                         f"build it with num_classes={pseudo.num_clusters}")
    step = AugmentedStep(aug, info.mean, info.std, seed)
    return fit(model, (train_loader, None), step=step, epochs=epochs, out=out, device=device, seed=seed, lr=lr,
               weight_decay=weight_decay, progress=progress, log=log, distributed=distributed,
               limit_batches=limit_batches)


def _num_outputs(model: nn.Module, info) -> Optional[int]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters())
            return int(model(torch.zeros(2, info.in_channels, *info.image_size, device=p.device, dtype=p.dtype)).shape[1])
    except StopIteration:
        return None
    finally:
        model.train(was)

