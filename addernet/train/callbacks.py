"""Hooks into ``fit``: a callback sees the run's state at the start of an epoch, after every step and
at the end of an epoch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn


@dataclass
class TrainState:
    """The run as callbacks see it.

    ``epoch``: index of the current epoch, from 0 (so after ``on_epoch_end`` of epoch e the run has
    done e + 1). ``global_step``: optimiser steps taken so far, across epochs and resumes.
    ``model``: the unwrapped model (not the DDP wrapper). ``extra``: the ``extra_state`` registered
    with ``fit`` (a discriminator, a vocabulary...). ``history``: the finished epochs' rows.
    """

    epoch: int
    global_step: int
    model: nn.Module
    optimizer: Optional[torch.optim.Optimizer]
    extra: dict[str, Any] = field(default_factory=dict)
    scheduler: Any = None
    history: list = field(default_factory=list)


class Callback:
    """Subclass and override what you need; every hook is a no-op here.

    Order within an epoch: ``on_epoch_start``, ``on_step`` after every training step (after the
    optimiser and scheduler steps), ``on_epoch_end`` after evaluation and before the checkpoint,
    so what it changes (a k-means result in ``extra``, keys it adds to ``row``) is saved and logged.
    Several callbacks run in the order given. Under DDP every rank runs them: guard file output with
    ``addernet.train.distributed.is_main()``. ``train_one_epoch`` fires only ``on_step``; the epoch
    hooks belong to the epoch loop (``fit``).
    """

    def on_epoch_start(self, state: TrainState) -> None:
        pass

    def on_step(self, state: TrainState, out) -> None:
        pass

    def on_epoch_end(self, state: TrainState, row: dict) -> None:
        pass
