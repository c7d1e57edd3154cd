"""CIFAR ResNet-20/32 (He et al. 2016, BasicBlock, 16/32/64 channels) as in the official AdderNet code.

Module names match the official ``resnet20.py`` so that its checkpoints map by renaming only:
conv1, bn1, layerK.i.{conv1,bn1,conv2,bn2,downsample.0,downsample.1}, fc, bn2.
"""
from __future__ import annotations

import torch
from torch import nn

from ._head import FeatureClassifier
from . import _input
from ._kind import init_batchnorm, layer_factory


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, layer, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = layer(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # A ReLU module per call site, so that addernet.fuse can fold relu1 into conv1's epilogue.
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = layer(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


def make_stage(layer, block, inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` residual blocks; the first strides and, where the shape changes, gets a 1x1
    ``downsample`` shortcut (``layer`` + BN), named as torchvision and the official code name it."""
    out = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(layer(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    mods = [block(layer, inplanes, planes, stride, downsample)]
    mods += [block(layer, out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*mods)


class CifarResNet(FeatureClassifier):
    """Stem conv3x3(16)+BN+ReLU, three stages of ``blocks`` BasicBlocks (16, 32, 64 channels, the
    last two starting with stride 2), AvgPool2d(8), then ``fc`` = Conv2d(64, num_classes, 1) and
    ``bn2`` = BatchNorm2d(num_classes), flattened. Stem and ``fc`` are nn.Conv2d in both kinds;
    the 3x3 convs and the 1x1 stride-2 downsample shortcuts are adder layers in kind='adder'.
    Expects 32x32 inputs (the pooling window is fixed, as in the official code); other sizes raise
    ValueError. ``forward_features`` gives the 64 pooled features; the head is ``fc`` + ``bn2``.
    """

    image_size = (32, 32)
    head_layers = ("fc", "bn2")
    conv_head = True
    feature_layers = ("layer1", "layer2", "layer3", "features")

    def __init__(self, blocks: int, num_classes: int = 10, kind: str = "adder", in_channels: int = 3,
                 eta: float | None = 0.2):
        super().__init__()
        layer = layer_factory(kind, eta)
        self.kind = kind
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_stage(layer, BasicBlock, 16, 16, blocks, 1)
        self.layer2 = make_stage(layer, BasicBlock, 16, 32, blocks, 2)
        self.layer3 = make_stage(layer, BasicBlock, 32, 64, blocks, 2)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Conv2d(64 * BasicBlock.expansion, num_classes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(num_classes)
        init_batchnorm(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        # 33..39 pixels would also pool to 1x1 and pass silently: check the input, not the map.
        x = _input.check_input_size(x, self.image_size, f"resnet{6 * len(self.layer1) + 2}")
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.avgpool(x).flatten(1)


def resnet20(num_classes: int = 10, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2) -> CifarResNet:
    """CIFAR ResNet-20: 3 stages x 3 BasicBlocks. kind='adder' has 20 adder layers
    (18 3x3 + 2 downsample shortcuts) and 2 convs (stem, fc)."""
    return CifarResNet(3, num_classes, kind, in_channels, eta)


def resnet32(num_classes: int = 10, kind: str = "adder", in_channels: int = 3, eta: float | None = 0.2) -> CifarResNet:
    """CIFAR ResNet-32: 3 stages x 5 BasicBlocks. kind='adder' has 32 adder layers
    (30 3x3 + 2 downsample shortcuts) and 2 convs (stem, fc)."""
    return CifarResNet(5, num_classes, kind, in_channels, eta)
