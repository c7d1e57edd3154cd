"""The C++/CUDA extension, reached through the dispatcher as ``torch.ops.addernet``."""
from __future__ import annotations

import torch


def adder_conv2d(x, weight, stride, padding, dilation, groups, grad_mode="paper"):
    op = torch.ops.addernet.adder_conv2d_exact if grad_mode == "exact" else torch.ops.addernet.adder_conv2d
    return op(x, weight, list(stride), list(padding), list(dilation), groups)
