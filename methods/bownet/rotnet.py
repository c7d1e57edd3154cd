"""RotNet, the first teacher: predict which of 4 rotations (0, 90, 180, 270 degrees) an image got."""
from __future__ import annotations

import torch

from addernet.data import augment
from addernet.train import StepOutput, classification_step

ROTATIONS = 4


def rotate_batch(x: torch.Tensor, mode: str = "all", generator: torch.Generator | None = None):
    """(N, C, H, W) square images -> (rotated images, rotation labels 0..3).

    mode 'all': every image in all 4 rotations (4N images, as the RotNet paper trains); 'random':
    one random rotation per image (N images, a quarter of the compute)."""
    if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images (N, C, H, H), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if mode == "all":
        xs = torch.cat([augment.rot90(x, k) for k in range(ROTATIONS)])
        return xs, torch.arange(ROTATIONS, device=x.device).repeat_interleave(n)
    if mode == "random":
        gen_device = generator.device if generator is not None else torch.device("cpu")
        k = torch.randint(0, ROTATIONS, (n,), generator=generator, device=gen_device).to(x.device)
        return augment.rot90(x, k), k
    raise ValueError(f"rotation mode must be 'all' or 'random', got {mode!r}")


class RotationStep:
    """An ``addernet.train`` step: (images, labels ignored) -> 4-way rotation cross-entropy and
    accuracy. ``perturb`` (optional) is applied before rotating, during training only."""

    def __init__(self, mode: str = "all", perturb=None, seed: int = 0):
        if mode not in ("all", "random"):
            raise ValueError(f"rotation mode must be 'all' or 'random', got {mode!r}")
        self.mode, self.perturb = mode, perturb
        # A CPU generator serves GPU batches too: the augmentations draw on the generator's device.
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model, batch) -> StepOutput:
        x = batch[0]
        gen = self.generator
        if self.perturb is not None and model.training:
            x = self.perturb(x, gen)
        return classification_step(model, rotate_batch(x, self.mode, gen))
