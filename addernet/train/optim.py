"""The paper's optimiser (SGD, momentum 0.9, weight decay 5e-4) and cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


def build_optimizer(model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
                    nesterov: bool = False) -> torch.optim.SGD:
    """SGD over every trainable parameter, BN included, as the official code does.

    AdderConv2d's adaptive scaling (eta) already happened in backward, so momentum and weight decay
    act on the scaled gradient, as in the paper.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


class CosineFactor:
    """lr factor 0.5 * (1 + cos(pi * t / total)): 1 at t=0, 0 at t=total.

    A class, not a lambda, so that LambdaLR's state_dict stores ``total`` as a plain int.
    """

    def __init__(self, total: int):
        self.total = max(int(total), 1)

    def __call__(self, t: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(t, self.total) / self.total))


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int = 1,
                    per_step: bool = True) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(t) = base_lr * 0.5 * (1 + cos(pi * t / T)), base_lr being each group's lr at creation.

    ``per_step=True``: t counts optimizer steps, T = epochs * steps_per_epoch; call ``step()`` after
    every batch (``train_one_epoch`` does). ``per_step=False``: t counts epochs, T = epochs, as the
    official CIFAR code (lr 0.05 * (1 + cos(pi e / 400)) for base 0.1); call ``step()`` once per epoch
    (``fit`` does). ``scheduler.per_step`` says which, for the loop; ``scheduler.base_lrs`` holds
    the base lr.
    """
    total = epochs * steps_per_epoch if per_step else epochs
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, CosineFactor(total))
    sched.per_step = per_step
    return sched


def set_schedule_length(scheduler, epochs: int, steps_per_epoch: int) -> None:
    """Re-target a loaded cosine schedule to a new run length (resuming with more epochs)."""
    for f in scheduler.lr_lambdas:
        if isinstance(f, CosineFactor):
            f.total = max(epochs * steps_per_epoch if getattr(scheduler, "per_step", True) else epochs, 1)
