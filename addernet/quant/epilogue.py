"""Every adder layer ``addernet.fuse`` left alone (no BatchNorm after it to fold), put in the form the
PT2E flow lowers: one ``adder_conv2d_fused`` op on a constant weight, with a per-channel epilogue.

A plain ``AdderConv2d`` does not export as that: its weight passes through ``adaptive_scale`` (an
identity autograd function, a ``view_as`` in the graph) and, when ``bn_centered``, its output gets
``centering_offset()`` added, computed from the weight inside the graph, so ``lower_adders`` finds
no constant weight to quantise and the layer stayed float. Folded here as ``fuse`` folds them under
a BatchNorm, and as the adder-only mode does: the bias and the centring offset are a constant per
output channel after the adder op, i.e. the epilogue's shift (scale 1, no ReLU).

An ``AdderLinear`` is the same op on 1x1 images: it becomes one too, its input viewed as (N, I, 1, 1).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import AdderConv2d, AdderLinear, FusedAdderConv2d

__all__ = ["AdderLinearAsConv", "fold_epilogues"]


def _identity_bn(adder: AdderConv2d) -> nn.BatchNorm2d:
    """A BatchNorm that is exactly the identity in eval mode (mean 0, var 1, eps 0, no affine), so that
    ``FusedAdderConv2d`` folds the layer's bias and centring offset as it does under a real one."""
    w = adder.weight
    return nn.BatchNorm2d(adder.out_channels, eps=0.0, affine=False, device=w.device, dtype=w.dtype).eval()


def _epilogue(adder: AdderConv2d) -> FusedAdderConv2d:
    return FusedAdderConv2d(adder, _identity_bn(adder), relu=False)


class AdderLinearAsConv(FusedAdderConv2d):
    """An ``AdderLinear`` as a 1x1 ``FusedAdderConv2d`` (scale 1, shift = bias): same outputs, one
    adder op on a constant weight that PT2E can quantise, under the linear layer's own module path."""

    def __init__(self, linear: AdderLinear):
        w = linear.weight.detach()
        conv = AdderConv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None, eta=None,
                           backend=linear.backend, device=w.device, dtype=w.dtype)
        with torch.no_grad():
            conv.weight.copy_(w.view(*w.shape, 1, 1))
            if linear.bias is not None:
                conv.bias.copy_(linear.bias)
        super().__init__(conv, _identity_bn(conv), relu=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x.reshape(-1, self.in_features, 1, 1))
        return y.reshape(*x.shape[:-1], self.out_features)


def fold_epilogues(model: nn.Module) -> nn.Module:
    """``model`` (in eval mode, ``fuse`` done) with each ``AdderConv2d`` and ``AdderLinear`` replaced, in
    place, by its epilogue form; a model that is itself one adder layer is returned replaced. A module
    registered under several names is replaced everywhere by one new module."""
    new: dict[int, nn.Module] = {}
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            new[id(m)] = _epilogue(m)
        elif isinstance(m, AdderLinear):
            new[id(m)] = AdderLinearAsConv(m)
    if id(model) in new:
        return new[id(model)]
    for parent in model.modules():
        for key, child in list(parent._modules.items()):
            if child is not None and id(child) in new:
                parent._modules[key] = new[id(child)]
    return model
