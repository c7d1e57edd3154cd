"""What a training run resolves once, before its first step, and the helpers both entries share.

``fit(model, loaders, ...)`` and ``fit_config(config)`` each resolve their arguments into two
small values and hand them to the one epoch loop (``engine.run_epochs``):

- ``Run``: where and how it runs: the process group (joined here under torchrun) and this rank's
  device, the autocast dtype (the ``amp`` spec is turned into a dtype here, once) and its
  GradScaler, the seed;
- ``Schedule``: what it runs for: the optimiser and lr schedule (the paper's SGD and cosine unless
  the caller gave its own), epochs, steps per epoch and the limits that cut a run short.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..nn import AdderConv2d
from . import amp as _amp
from . import distributed as _dist
from .loop import _batches
from .optim import SCHEDULES, build_optimizer, check_schedule, make_schedule  # noqa: F401 (SCHEDULES re-exported)


@dataclass(frozen=True)
class Run:
    env: _dist.DistEnv               # rank and world size (world 1 without torchrun)
    device: torch.device             # this rank's device
    amp: Optional[torch.dtype]       # the autocast dtype, None when off
    scaler: Any                      # a GradScaler for float16 autocast, else None
    seed: int
    distributed: bool                # average the metrics over ranks

    @property
    def is_main(self) -> bool:
        return self.env.is_main


def start_run(device=None, amp=False, seed: int = 0, distributed: bool = False) -> Run:
    """Join the torchrun process group (``distributed``) or pick the device, resolve ``amp``
    (False, True/'auto', 'bf16', 'fp16' or a dtype) for it, and seed everything."""
    if distributed:
        env, dev = _dist.setup(device)
    else:
        env, dev = _dist.DistEnv(), pick_device(device)
    dtype = _amp.amp_dtype(amp, dev.type)
    seed_everything(seed)
    return Run(env, dev, dtype, _amp.make_scaler(dev, dtype), int(seed), bool(distributed))


@dataclass(frozen=True)
class Schedule:
    optimizer: Optional[torch.optim.Optimizer]
    scheduler: Any                   # stepped per batch unless it says per_step = False
    epochs: int
    steps: Optional[int]             # batches per epoch (None: the loader has no len)
    limit_batches: Optional[int] = None
    stop_after: Optional[int] = None  # end after this many epochs, the schedule still planned for epochs


def plan_schedule(model: nn.Module, train_loader, epochs: int, *, optimizer=None, scheduler=None, lr: float = 0.1,
                  momentum: float = 0.9, weight_decay: float = 5e-4, schedule: str = "step",
                  limit_batches: Optional[int] = None, stop_after: Optional[int] = None) -> Schedule:
    """``optimizer`` None builds the paper's SGD(lr, momentum, weight_decay) over ``model`` with a
    cosine over the run (``schedule``: stepped per 'step' or per 'epoch'; 'constant': none); a caller's optimizer with
    no scheduler keeps its lr."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    check_schedule(schedule)
    steps = _batches(train_loader, limit_batches)
    if optimizer is None:
        optimizer = build_optimizer(model, lr, momentum, weight_decay)
        if scheduler is None:
            if steps is None:
                raise ValueError("the default schedule needs len(train loader); "
                                 "pass scheduler= or limit_batches=")
            scheduler = make_schedule(optimizer, schedule, epochs, steps)
    return Schedule(optimizer, scheduler, int(epochs), steps, limit_batches, stop_after)


def pick_device(device: Optional[str]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The data order's seed for one epoch: a function of (seed, epoch, rank) alone, so a resumed
    run shuffles exactly as the uninterrupted one without saving generator state."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)


def set_loader_epoch(loader, seed: int, epoch: int, rank: int = 0) -> None:
    """Call at the start of every epoch: DistributedSampler.set_epoch, and re-seed the loader's
    generator (it draws the shuffle order and the workers' base seed)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    gens = [getattr(loader, "generator", None), getattr(sampler, "generator", None)]
    for g in {id(g): g for g in gens if g is not None}.values():
        g.manual_seed(epoch_seed(seed, epoch, rank))


def _split_loaders(loaders) -> tuple:
    """(train, test, info) from (train, test) or (train, test, info); test and info may be None."""
    loaders = tuple(loaders)
    if len(loaders) == 2:
        return (*loaders, None)
    if len(loaders) == 3:
        return loaders
    raise ValueError(f"loaders must be (train, test) or (train, test, info), got {len(loaders)} items")


def _kind_of(model: nn.Module) -> str:
    """'adder' when ``model`` holds an adder layer, else 'conv'."""
    return "adder" if any(isinstance(m, AdderConv2d) for m in model.modules()) else "conv"
