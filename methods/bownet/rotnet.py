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


@torch.no_grad()
def rotation_accuracy_by_class(model, loader, num_classes: int, device="cpu") -> dict:
    """How well a RotNet tells the rotations apart, per class of the (clean) images in ``loader``:
    {'acc': [per class], 'upside_down': [per class]}, the latter the fraction of 0/180-degree
    images mistaken for each other (digits 0, 1, 8 look alike upside down, 6 and 9 swap)."""
    was = model.training
    model.eval()
    hits = torch.zeros(num_classes)
    flips = torch.zeros(num_classes)
    count = torch.zeros(num_classes)
    try:
        for x, y in loader:
            x = x.to(device)
            xr, k = rotate_batch(x, "all")
            pred = model(xr).argmax(1).cpu()
            k, yy = k.cpu(), y.repeat(ROTATIONS)
            hits += torch.bincount(yy, weights=(pred == k).float(), minlength=num_classes)
            upright = (k % 2 == 0)
            flips += torch.bincount(yy[upright], weights=(pred[upright] == (k[upright] + 2) % 4).float(),
                                    minlength=num_classes)
            count += torch.bincount(yy, minlength=num_classes).float()
    finally:
        model.train(was)
    return {"acc": (hits / count.clamp_min(1)).tolist(), "upside_down": (2 * flips / count.clamp_min(1)).tolist()}
