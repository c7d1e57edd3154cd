"""The C++/CUDA extension, reached through the dispatcher as ``torch.ops.addernet``."""
from __future__ import annotations

import torch


def adder_conv2d(x, weight, stride, padding, dilation, groups):
    return torch.ops.addernet.adder_conv2d(x, weight, list(stride), list(padding), list(dilation), groups)
