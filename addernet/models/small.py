"""The paper's small models: LeNet-5-BN (MNIST) and VGG-small (CIFAR)."""
from __future__ import annotations

import torch
from torch import nn

from ._head import FeatureClassifier
from . import _input
from ._kind import init_batchnorm, layer_factory


class LeNet5BN(FeatureClassifier):
    """LeNet-5 with BatchNorm for 28x28 inputs (6-16-120-84-10), fully connected layers as convolutions:

    conv1 Conv2d(in, 6, 5, padding 2) + BN + ReLU + MaxPool2   (28 -> 28 -> 14; a conv in both kinds)
    conv2 layer(6, 16, 5)     + BN + ReLU + MaxPool2          (14 -> 10 -> 5)
    fc1   layer(16, 120, 5)   + BN + ReLU                      (5 -> 1)
    fc2   layer(120, 84, 1)   + BN + ReLU
    fc3   Conv2d(84, num_classes, 1) + BN, flatten             (a conv in both kinds)

    This is the classic LeNet-5 the paper counts: 416.5K multiply-accumulates per image against the
    paper's reported 435K (the 20-50-500 Caffe variant would be 2.3M). ``layer`` is AdderConv2d
    for kind='adder' (3 adder layers) and nn.Conv2d for kind='conv'. No layer has a bias: each
    feeds a BatchNorm, which has its own.

    ``forward_features`` gives the 84 features after fc2's ReLU; the head is fc3 + bn5. Other
    input sizes raise ValueError.
    """

    image_size = (28, 28)
    head_layers = ("fc3", "bn5")
    conv_head = True
    feature_layers = ("pool1", "pool2", "relu3", "features")

    def __init__(self, num_classes: int = 10, kind: str = "adder", in_channels: int = 1, eta: float | None = 0.2):
        super().__init__()
        layer = layer_factory(kind, eta)
        self.kind = kind
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = layer(6, 16, 5, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = layer(16, 120, 5, bias=False)
        self.bn3 = nn.BatchNorm2d(120)
        self.fc2 = layer(120, 84, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(84)
        self.fc3 = nn.Conv2d(84, num_classes, 1, bias=False)
        self.bn5 = nn.BatchNorm2d(num_classes)
        # One ReLU module per call site, so that addernet.fuse can fold each into the adder
        # layer before it (a module called twice cannot be replaced for one call alone).
        self.relu1, self.relu2, self.relu3, self.relu4 = (nn.ReLU(inplace=True) for _ in range(4))
        # Likewise one pool per call site, so that a hook on each sees one output (pools hold no state,
        # so state dicts saved with the shared ``pool`` load unchanged).
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        init_batchnorm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = _input.check_input_size(x, self.image_size, "lenet5_bn")
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.fc1(x)))
        return self.relu4(self.bn4(self.fc2(x))).flatten(1)


class VGGSmall(FeatureClassifier):
    """VGG-small for 32x32 inputs: 128C3-128C3-MP-256C3-256C3-MP-512C3-512C3-MP-FC.

    Each 3x3 (padding 1, no bias) is followed by BN + ReLU, and MP is MaxPool2d(2), all in
    ``features``; ``classifier`` = Linear(512*4*4, num_classes). The first conv and the classifier
    stay multiplicative; the other five 3x3 are adder layers in kind='adder'.

    ``forward_features`` gives the 8192 flattened features; the head is ``classifier``. The stage
    outputs are the pools ``features.6`` (128x16x16) and ``features.13`` (256x8x8). Other input
    sizes raise ValueError.
    """

    image_size = (32, 32)
    head_layers = ("classifier",)
    feature_layers = ("features.6", "features.13", "features")

    def __init__(self, num_classes: int = 10, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2):
        super().__init__()
        layer = layer_factory(kind, eta)
        self.kind = kind
        mods: list[nn.Module] = []
        cin = in_channels
        for i, cout in enumerate((128, 128, 256, 256, 512, 512)):
            make = nn.Conv2d if i == 0 else layer
            mods += [make(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i % 2 == 1:
                mods.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*mods)
        self.classifier = nn.Linear(512 * 4 * 4, num_classes)
        init_batchnorm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(_input.check_input_size(x, self.image_size, "vgg_small")).flatten(1)


def lenet5_bn(num_classes: int = 10, kind: str = "adder", in_channels: int = 1, eta: float | None = 0.2) -> LeNet5BN:
    """LeNet-5-BN (see ``LeNet5BN``): 2 adder layers in kind='adder'."""
    return LeNet5BN(num_classes, kind, in_channels, eta)


def vgg_small(num_classes: int = 10, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2) -> VGGSmall:
    """VGG-small (see ``VGGSmall``): 5 adder layers in kind='adder'."""
    return VGGSmall(num_classes, kind, in_channels, eta)
