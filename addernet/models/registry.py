"""Name -> model builder, and each model's input size and class count."""
from __future__ import annotations

from typing import Callable, NamedTuple

from torch import nn

from .batchnorm import check_bn_momentum, set_bn_momentum
from .resnet_cifar import CifarResNet, resnet20, resnet32
from .resnet_imagenet import resnet18, resnet50
from .small import LeNet5BN, VGGSmall, lenet5_bn, vgg_small
from .tiny import tinynet

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5_bn": lenet5_bn,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "vgg_small": vgg_small,
    "tinynet": tinynet,   # no paper behind it: smoke tests and the 8x8 digits
}


class ModelSpec(NamedTuple):
    """What a registered model takes by default: ``input_size`` (C, H, W) of one image and
    ``num_classes``. ``fixed_size``: the model accepts only this H x W (other sizes raise
    ValueError); the ImageNet ResNets pool adaptively and take any size, 224x224 being the usual,
    and TinyNet any of 2x2 or more (8x8, the digits set's, by default)."""
    input_size: tuple[int, int, int]
    num_classes: int
    fixed_size: bool = True
    paper: bool = True      # one of the AdderNet paper's architectures (TinyNet is not)


SPECS: dict[str, ModelSpec] = {
    "lenet5_bn": ModelSpec((1, *LeNet5BN.image_size), 10),
    "resnet20": ModelSpec((3, *CifarResNet.image_size), 10),
    "resnet32": ModelSpec((3, *CifarResNet.image_size), 10),
    "resnet18": ModelSpec((3, 224, 224), 1000, fixed_size=False),
    "resnet50": ModelSpec((3, 224, 224), 1000, fixed_size=False),
    "vgg_small": ModelSpec((3, *VGGSmall.image_size), 10),
    "tinynet": ModelSpec((1, 8, 8), 10, fixed_size=False, paper=False),
}


def canonical_name(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in MODELS:
        listed = sorted(MODELS, key=lambda n: (not SPECS[n].paper, n))  # the paper's first
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(listed)}")
    return key


def get_model(name: str, bn_momentum: float | None = None, **kwargs) -> nn.Module:
    """Build a registered model; ``kwargs`` (num_classes, kind, in_channels, eta) go to its builder.
    Names are case-insensitive and '-' reads as '_' ('lenet5-bn' is 'lenet5_bn').

    ``bn_momentum``: every BatchNorm's running-average momentum. None (default) keeps the builder's:
    ``ADDER_BN_MOMENTUM`` (0.5) in a model with adder layers, PyTorch's 0.1 in a CNN twin; 0.1
    gives an adder model the official code's. It changes the running statistics only, never what
    a training run computes."""
    key = canonical_name(name)
    if bn_momentum is not None:
        check_bn_momentum(bn_momentum)  # before anything is built
    model = MODELS[key](**kwargs)
    return model if bn_momentum is None else set_bn_momentum(model, bn_momentum)


def model_spec(name: str) -> ModelSpec:
    """Default input size (C, H, W) and class count of a registered model (see ``ModelSpec``)."""
    return SPECS[canonical_name(name)]
