"""BatchNorm in adder networks: the running-average momentum, and re-estimating statistics from data.

An adder layer's outputs are negative distances in the hundreds (unless centred, see
``AdderConv2d.bn_centered``), while BatchNorm's running statistics start at mean 0, variance 1 and
move a fraction per batch. In eval mode a fresh (or briefly
trained) adder network therefore normalises with statistics far from the real ones: every
activation lands below zero, the ReLUs zero them all and the output is the same for every image.
Feature probes and random-init baselines need the statistics re-estimated first.
"""
from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from ..nn import AdderConv2d

# The running-average momentum of every BatchNorm in a network with adder layers (PyTorch's is
# 0.1). Even centred (``AdderConv2d.bn_centered``), the statistics of a deep adder network move
# with every step, at a constant lr faster than a 10-batch average follows, in the BatchNorms the
# adder layers feed and in those after them (ResNet-20's largest error was the head's). 0.5 was
# chosen on a validation split (docs/training.md, issue 22). It acts on the running statistics
# only: the train-mode forward and every gradient are the same at any momentum.
ADDER_BN_MOMENTUM = 0.5


def check_bn_momentum(momentum) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 < momentum <= 1:
        raise ValueError(f"bn_momentum must be a number in (0, 1], got {momentum!r}")
    return float(momentum)


def set_bn_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Set the running-average ``momentum`` of every BatchNorm of ``model`` that tracks running
    statistics; returns ``model``."""
    momentum = check_bn_momentum(momentum)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            m.momentum = momentum
    return model


def _first_tensor(batch):
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("x", "image", "images", "input"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    raise TypeError(f"recalibrate_bn: a batch must be a tensor, an (x, ...) tuple or a dict with 'x'; "
                    f"got {type(batch).__name__}")


def recalibrate_bn(model: nn.Module, loader, batches: int | None = 50, device=None) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as the plain average over
    the first ``batches`` batches of ``loader`` (all of them if None), in train mode under
    ``torch.no_grad()``; each module's train/eval mode is restored afterwards. Returns ``model``.

    Only the inputs are used (the first element of an (x, y) batch). ``device`` defaults to the
    model's. BatchNorm layers that track no running statistics are left alone.
    """
    if batches is not None and (int(batches) != batches or batches < 1):
        raise ValueError(f"batches must be a positive integer or None, got {batches!r}")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    if device is None:
        p = next(itertools.chain(model.parameters(), model.buffers()), None)
        device = p.device if p is not None else torch.device("cpu")
    it = iter(loader if batches is None else itertools.islice(loader, int(batches)))
    first = next(it, None)
    if first is None:  # before any statistic is reset
        raise ValueError("recalibrate_bn: the loader gave no batches")
    modes = {m: m.training for m in model.modules()}
    centred = [m for m in model.modules() if isinstance(m, AdderConv2d) and m.bn_centered]
    try:
        for m in centred:  # the offsets stay those the model will evaluate with
            m.input_mean_held = True
        # update_bn: reset stats, momentum None (a cumulative average), train mode, no grad.
        update_bn((_first_tensor(b) for b in itertools.chain([first], it)), model, device=device)
    finally:
        for m in centred:
            m.input_mean_held = False
        for m, training in modes.items():
            m.training = training
    return model
