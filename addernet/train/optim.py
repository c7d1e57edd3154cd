"""The paper's optimiser (SGD, momentum 0.9, weight decay 5e-4) and cosine learning-rate schedule."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def build_optimizer(model_or_param_groups, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4, *,
                    no_decay: Iterable = (), nesterov: bool = False) -> torch.optim.SGD:
    """SGD over every trainable parameter, BN included, as the official code does.

    ``model_or_param_groups``: a model, or what ``torch.optim.SGD`` takes (parameters, or param-group
    dicts whose own keys win over these defaults). ``no_decay``: parameters, or with a model their
    names (``"fc.bias"``), trained with no weight decay; they go into a group of their own, after the
    others. AdderConv2d's adaptive scaling (eta) already happened in backward, so momentum and weight
    decay act on the scaled gradient, as in the paper.
    """
    no_decay = list(no_decay)
    if isinstance(model_or_param_groups, nn.Module):
        named = [(n, p) for n, p in model_or_param_groups.named_parameters() if p.requires_grad]
        by_name = dict(named)
        excluded = set()
        for item in no_decay:
            if isinstance(item, str):
                if item not in by_name:
                    raise ValueError(f"no_decay names {item!r}, which is not a trainable parameter of the model")
                excluded.add(id(by_name[item]))
            else:
                excluded.add(id(item))
        groups = [{"params": [p for _, p in named]}]
    else:
        if any(isinstance(item, str) for item in no_decay):
            raise ValueError("no_decay by name needs a model; with parameter groups give the parameters")
        excluded = {id(p) for p in no_decay}
        groups = list(model_or_param_groups)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        groups = [{**g, "params": list(g["params"])} for g in groups]
    if excluded:
        split = []
        for g in groups:
            keep = [p for p in g["params"] if id(p) not in excluded]
            drop = [p for p in g["params"] if id(p) in excluded]
            if keep:
                split.append({**g, "params": keep})
            if drop:
                split.append({**g, "params": drop, "weight_decay": 0.0})
        held = {id(p) for g in groups for p in g["params"]}
        if not excluded <= held:
            raise ValueError("no_decay holds a parameter that the optimiser does not train")
        groups = split
    if not any(g["params"] for g in groups):
        raise ValueError("build_optimizer: no trainable parameters")
    return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)


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


class ConstantFactor:
    """lr factor 1 throughout (a class, so that LambdaLR's state_dict pickles nothing)."""

    def __call__(self, t: int) -> float:
        return 1.0


# --schedule / TrainConfig.schedule / fit(schedule=...): the lr over the run.
SCHEDULES = {
    "step": "cosine to 0 over the run, stepped every optimiser step (default)",
    "epoch": "cosine to 0 over the run, stepped once per epoch, as the official CIFAR code",
    "constant": "the base lr throughout (evaluations mid-run are exact too: issue 22)",
}


def check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {schedule!r}")
    return schedule


def make_schedule(optimizer: torch.optim.Optimizer, schedule: str, epochs: int,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler ``SCHEDULES[schedule]`` describes (``per_step`` set for the loop)."""
    if check_schedule(schedule) == "constant":
        sched = torch.optim.lr_scheduler.LambdaLR(optimizer, ConstantFactor())
        sched.per_step = True
        return sched
    return cosine_schedule(optimizer, epochs, steps_per_epoch, per_step=schedule == "step")


def set_schedule_length(scheduler, epochs: int, steps_per_epoch: int) -> None:
    """Re-target a loaded cosine schedule to a new run length (resuming with more epochs), and set the
    optimiser's lr to the new schedule's value at the current step."""
    factors = list(getattr(scheduler, "lr_lambdas", ()))
    for f in factors:
        if isinstance(f, CosineFactor):
            f.total = max(epochs * steps_per_epoch if getattr(scheduler, "per_step", True) else epochs, 1)
    # The optimiser still holds the old schedule's last lr (0 at its end), which the next step would
    # use and the epoch's log would show; LambdaLR computes lr from base_lrs, so set it from there.
    groups = scheduler.optimizer.param_groups
    if factors and len(factors) == len(groups):
        for group, base, f in zip(groups, scheduler.base_lrs, factors):
            if isinstance(f, CosineFactor):
                group["lr"] = base * f(scheduler.last_epoch)
        scheduler._last_lr = [g["lr"] for g in groups]


def adder_param_groups(model: nn.Module, lr: float, adder_lr_scale: float = 300.0) -> list[dict]:
    """Parameter groups for Adam/AdamW (or any optimiser) in which the adder layers' weights get
    ``lr * adder_lr_scale`` and every other trainable parameter ``lr``.

    Why: Adam moves each weight by about ``lr`` per step whatever its gradient's size, and the
    adder weights start at N(0, 1) (the paper's scale, which an L1 distance needs) where a CNN's
    kaiming weights sit about ten times smaller. At lr 1e-3 an AdderNet's weights therefore barely
    move relative to their size. The default scale, 300, was chosen on a validation split
    (docs/training.md): 100 on LeNet-5-BN among 1-100, then 300 on ResNet-20 among 30-300. The
    same as training W = s * V with Adam on V, up to Adam's eps.
    ``torch.optim.Adam(adder_param_groups(model, 1e-3), lr=1e-3)``.
    Not for the paper's SGD + eta recipe, whose step is set by eta already (``build_optimizer``).
    """
    if not lr > 0 or not adder_lr_scale > 0:
        raise ValueError(f"lr and adder_lr_scale must be positive, got {lr!r} and {adder_lr_scale!r}")
    from ..nn import AdderConv2d

    adder = {id(m.weight) for m in model.modules() if isinstance(m, AdderConv2d)}
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in adder], "lr": lr},
              {"params": [p for p in params if id(p) in adder], "lr": lr * adder_lr_scale}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("adder_param_groups: no trainable parameters")
    return groups
