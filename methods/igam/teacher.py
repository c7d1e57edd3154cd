"""The robust teacher: L-inf PGD adversarial training (trained once, cached by its config), then
logit-layer fine-tuning on the target task with the backbone frozen in eval mode."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from addernet.models import replace_head
from addernet.train import StepOutput, classification_step, fit
from methods.common import pgd

from .step import freeze


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


class PGDTrainingStep:
    """Madry et al.'s adversarial training as an ``addernet.train`` step: each batch is replaced by
    its L-inf PGD adversary (eps, step ``alpha``, ``steps`` steps, random start) found with the model
    in eval mode, and the model trains on CE of the adversarial batch."""

    def __init__(self, eps: float, alpha: Optional[float] = None, steps: int = 7, seed: int = 0):
        if eps <= 0 or steps < 1:
            raise ValueError(f"adversarial training needs eps > 0 and steps >= 1, got eps={eps}, steps={steps}")
        self.eps, self.alpha, self.steps = float(eps), alpha, int(steps)
        self.generator = None
        self.seed = seed

    def __call__(self, model: nn.Module, batch) -> StepOutput:
        x, y = batch[0], batch[1]
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)
        net = _unwrap(model)   # attack the bare module: a DDP forward without a backward stalls
        was = net.training
        net.eval()
        try:
            x_adv = pgd(net, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps, random_start=True,
                        generator=self.generator)
        finally:
            net.train(was)
        logits = model(x_adv.detach())
        loss = F.cross_entropy(logits, y)
        return StepOutput(loss, {"loss": loss.detach(), "acc": (logits.detach().argmax(1) == y).float().mean()})


@dataclass(frozen=True)
class TeacherConfig:
    """Everything that determines a robust teacher; its hash names the cache file."""
    model: str = "lenet5_bn"
    kind: str = "conv"
    data: str = "mnist5k"
    classes: tuple = (0, 1, 2, 3, 4)
    input_size: tuple = (1, 28, 28)
    resize: str = "none"            # how source images reach input_size: 'none' or an adapter name
    eps: float = 0.15
    alpha: float = 0.04
    steps: int = 7
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    limit_batches: Optional[int] = None

    def key(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def robust_teacher(config: TeacherConfig, build, loaders, *, cache_dir: Optional[str] = None,
                   device="cpu", progress: bool = False, log=None) -> nn.Module:
    """Train ``build()`` (a fresh model) by PGD adversarial training on ``loaders`` = (train, test),
    or load it from ``cache_dir/teacher-<config hash>.pt`` when that exists. Returns it in eval mode.
    ``config.eps == 0``: the same training with plain cross-entropy, a non-robust teacher (issue 27's
    control for transfer: IGAM with a teacher that has no robustness to give)."""
    path = os.path.join(cache_dir, f"teacher-{config.key()}.pt") if cache_dir else None
    model = build()
    if path and os.path.exists(path):
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("config") != json.loads(json.dumps(dataclasses.asdict(config), default=list)):
            raise ValueError(f"{path}: cached teacher's config differs from the one asked for (hash collision?)")
        model.load_state_dict(saved["state_dict"])
        if log:
            log(f"robust teacher loaded from {path}")
        return model.to(device).eval()
    step = classification_step if config.eps == 0 else PGDTrainingStep(config.eps, config.alpha, config.steps,
                                                                        seed=config.seed)
    fit(model, loaders, step=step, epochs=config.epochs, lr=config.lr, device=device, seed=config.seed,
        progress=progress, log=log or (lambda _m: None), limit_batches=config.limit_batches, out=None)
    model = model.cpu().eval()
    if path:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = path + ".tmp"
        torch.save({"config": json.loads(json.dumps(dataclasses.asdict(config), default=list)),
                    "state_dict": model.state_dict()}, tmp)
        os.replace(tmp, path)
    return model.to(device)


class HeadTuning(nn.Module):
    """Wraps a model whose ``head`` alone trains: every other module stays in eval mode whatever
    ``train()`` says, so BatchNorm buffers of the backbone never move."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> "HeadTuning":
        self.training = mode
        self.model.eval()
        self.model.head.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def finetune_head(teacher: nn.Module, loaders, num_classes: int, *, epochs: int = 3, lr: float = 1e-3,
                  device="cpu", seed: int = 0, progress: bool = False, log=None,
                  limit_batches: Optional[int] = None) -> nn.Module:
    """Stage 1 of IGAM: a copy of ``teacher`` with a new logit layer (``replace_head``) for the target
    task, trained with Adam (official: 1e-3) while every other weight and BatchNorm buffer stays
    frozen. Returns the whole model frozen (eval mode, no gradients)."""
    torch.manual_seed(seed)   # the new head's init must not depend on what ran before
    model = replace_head(copy.deepcopy(teacher).cpu(), num_classes)
    for p in model.parameters():
        p.requires_grad_(False)
    head = list(model.head.parameters())
    if not head:
        raise ValueError("the teacher's head has no parameters to fine-tune")
    for p in head:
        p.requires_grad_(True)
    wrapped = HeadTuning(model)
    optimizer = torch.optim.Adam(head, lr=lr)
    fit(wrapped, loaders, optimizer=optimizer, epochs=epochs, device=device, seed=seed, progress=progress,
        log=log or (lambda _m: None), limit_batches=limit_batches, out=None)
    return freeze(model)
