"""The one switch every model shares: which layer its convertible convolutions use."""
from __future__ import annotations

import functools
from typing import Callable

from torch import nn

from ..nn import AdderConv2d
from .batchnorm import ADDER_BN_MOMENTUM, set_bn_momentum

KINDS = ("adder", "conv")


def layer_factory(kind: str, eta: float | None = 0.2) -> Callable[..., nn.Module]:
    """``nn.Conv2d``-signature constructor: AdderConv2d for kind='adder', nn.Conv2d for 'conv'.

    The ResNets' and VGG-small's endpoint layers (stem, classifier) do not go through this: they are
    nn.Conv2d/nn.Linear in both kinds, as in the paper and its official code. LeNet-5-BN's do, as
    in the paper's all-adder MNIST network (``first_layer``/``last_layer`` keep them convolutions).

    Every adder layer of these models feeds a BatchNorm, so each is built ``bn_centered`` (see
    ``AdderConv2d``): the BatchNorm's running statistics then hold in eval mode at any point of
    training, not only at the end of a schedule that decays to 0 (issue 22).
    """
    if kind == "adder":
        return functools.partial(AdderConv2d, eta=eta, bn_centered=True)
    if kind == "conv":
        return nn.Conv2d
    raise ValueError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")


def init_batchnorm(model: nn.Module) -> None:
    """Unit scale, zero shift; with adder layers in the model, every BatchNorm's momentum is
    ``ADDER_BN_MOMENTUM`` (see there: the running statistics then follow training)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if any(isinstance(m, AdderConv2d) for m in model.modules()):
        set_bn_momentum(model, ADDER_BN_MOMENTUM)
