"""ImageNet ResNet-18/50 in torchvision's layout (v1.5: a Bottleneck strides in its 3x3).

In kind='adder' every convolution but the 7x7 stem is an adder layer, downsample 1x1s included;
``fc`` stays nn.Linear, as the official AdderNet ImageNet models keep the first and last layers.
Adaptive average pooling makes any input size above 32x32 work.
"""
from __future__ import annotations

import torch
from torch import nn

from ._head import FeatureClassifier
from ._kind import init_batchnorm, layer_factory
from .resnet_cifar import BasicBlock, make_stage  # the same block and stages; only the stem and head differ


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, layer, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = layer(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = layer(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = layer(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        # A ReLU module per call site, so that addernet.fuse can fold relu1 and relu2.
        self.relu1, self.relu2, self.relu3 = (nn.ReLU(inplace=True) for _ in range(3))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


class ImageNetResNet(FeatureClassifier):
    """conv1 7x7/2 + bn1 + relu + maxpool 3x3/2, layer1..4 (64/128/256/512 planes), avgpool, fc.

    ``forward_features`` gives the pooled 512 * expansion features; the head is ``fc``.
    """

    image_size = None  # any size: the pooling is adaptive
    head_layers = ("fc",)
    feature_layers = ("layer1", "layer2", "layer3", "layer4", "features")

    def __init__(self, block, layers, num_classes: int = 1000, kind: str = "adder", in_channels: int = 3,
                 eta: float | None = 0.2):
        super().__init__()
        layer = layer_factory(kind, eta)
        self.kind = kind
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        e = block.expansion
        self.layer1 = make_stage(layer, block, 64, 64, layers[0], 1)
        self.layer2 = make_stage(layer, block, 64 * e, 128, layers[1], 2)
        self.layer3 = make_stage(layer, block, 128 * e, 256, layers[2], 2)
        self.layer4 = make_stage(layer, block, 256 * e, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        # Only real convs get He init: AdderConv2d is not an nn.Conv2d and keeps its N(0, 1).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        init_batchnorm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


def resnet18(num_classes: int = 1000, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2) -> ImageNetResNet:
    """ResNet-18 (BasicBlock x [2, 2, 2, 2]). kind='adder': 19 adder layers (16 3x3 + 3 downsample
    shortcuts), conv1 stays a conv, fc a Linear."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes, kind, in_channels, eta)


def resnet50(num_classes: int = 1000, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2) -> ImageNetResNet:
    """ResNet-50 (Bottleneck x [3, 4, 6, 3]). kind='adder': 52 adder layers (48 in the blocks + 4
    downsample shortcuts), conv1 stays a conv, fc a Linear."""
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes, kind, in_channels, eta)
