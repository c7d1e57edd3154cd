"""Name -> model builder."""
from __future__ import annotations

from typing import Callable

from torch import nn

from .resnet_cifar import resnet20, resnet32
from .resnet_imagenet import resnet18, resnet50
from .small import lenet5_bn, vgg_small

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5_bn": lenet5_bn,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg_small": vgg_small,
}


def canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return key


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; ``kwargs`` (num_classes, kind, in_channels, eta) go to its builder.
    Names are case-insensitive and '-' reads as '_' ('lenet5-bn' is 'lenet5_bn')."""
    return MODELS[canonical_name(name)](**kwargs)
