"""TinyNet: a tiny model for smoke tests and the 8x8 ``digits`` set, which LeNet-5-BN's 28x28 layout
cannot take. It follows the paper's layout at toy scale: a conv stem, two adder layers with BN, and a
conv classifier. No paper is behind it; it is registered beside the paper's models so that one
registry (``MODELS``) names every model the library builds.
"""
from __future__ import annotations

import torch
from torch import nn

from ._head import FeatureClassifier
from ._kind import init_batchnorm, layer_factory


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


def tinynet(num_classes: int = 10, kind: str = "adder", in_channels: int = 1, eta: float | None = 0.2) -> TinyNet:
    """TinyNet (see ``TinyNet``): any input of 2x2 or more; 1x8x8 (``digits``) by default."""
    return TinyNet(num_classes=num_classes, kind=kind, in_channels=in_channels, eta=eta)
