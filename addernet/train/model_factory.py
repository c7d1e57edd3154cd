"""The training model factory: ``build_model`` makes any ``addernet.models`` name, plus ``tinynet``,
a tiny model for smoke tests and the 8x8 ``digits`` set, which LeNet-5-BN's 28x28 layout cannot take.

TinyNet follows the paper's layout at toy scale: a conv stem, two adder layers with BN, and a conv
classifier. It lives here rather than in ``addernet.models`` because it has no paper behind it.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import FeatureClassifier, get_model
from ..models._kind import init_batchnorm, layer_factory


class TinyNet(FeatureClassifier):
    """conv(in,8,3) BN ReLU | layer(8,16,3) BN ReLU MaxPool2 | layer(16,32,3) BN ReLU | GAP |
    Conv2d(32, classes, 1) BN, flatten. Any input of 2x2 or more. ``forward_features`` gives the
    32 pooled features; the head is ``fc`` + ``bn``."""

    head_layers = ("fc", "bn")
    conv_head = True
    feature_layers = ("features.2", "features.6", "features")

    def __init__(self, num_classes: int = 10, kind: str = "adder", in_channels: int = 1, eta: float | None = 0.2):
        super().__init__()
        layer = layer_factory(kind, eta)
        self.kind = kind
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            layer(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            layer(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Conv2d(32, num_classes, 1, bias=False)
        self.bn = nn.BatchNorm2d(num_classes)
        init_batchnorm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)


TRAIN_MODELS = {"tinynet": TinyNet}


def build_model(name: str, **kwargs) -> nn.Module:
    """``tinynet`` or any ``addernet.models`` name; kwargs: num_classes, kind, in_channels, eta."""
    key = str(name).strip().lower().replace("-", "_")
    if key in TRAIN_MODELS:
        return TRAIN_MODELS[key](**kwargs)
    return get_model(name, **kwargs)


def model_names() -> list[str]:
    from ..models import MODELS

    return sorted([*MODELS, *TRAIN_MODELS])
