"""Heads: the layers after ``forward_features``, as one module whatever the model keeps them as.

Some models keep their classifier as a 1x1 Conv2d + BatchNorm over a 1x1 map (the official
AdderNet layouts, whose checkpoint names must not change). ``FlatConvHead`` presents those as a
module from flat features (N, C) to logits without re-registering them under a new name.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import AdderConv2d


class FlatConvHead(nn.Module):
    """features (N, C) -> (N, C, 1, 1) -> each of ``layers`` in turn -> flattened logits.

    A view: it shares the model's modules (their parameters are the model's), it is not registered
    in the model, and the model's ``head`` property builds a fresh one on each access.
    """

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        x = f[:, :, None, None]
        for m in self.layers:
            x = m(x)
        return x.flatten(1)


def _like(old: nn.Module, new: nn.Module) -> nn.Module:
    p = next(iter(old.parameters()), None)
    if p is not None:
        new = new.to(device=p.device, dtype=p.dtype)
    return new.train(old.training)


def resized(old: nn.Module, num_classes: int) -> nn.Module:
    """A fresh copy of a head layer (Conv2d, AdderConv2d, Linear, BatchNorm2d) with ``num_classes`` outputs.

    Conv2d/Linear get torch's default init, AdderConv2d its N(0, 1) init and the old ``eta``, BatchNorm2d weight 1 and bias 0, as the models build
    them; device, dtype and train/eval mode follow the old layer.
    """
    if type(old) is AdderConv2d:
        new = AdderConv2d(old.in_channels, num_classes, old.kernel_size, stride=old.stride, padding=old.padding,
                          bias=old.bias is not None, eta=old.eta, backend=old.backend, bn_centered=old.bn_centered)
    elif type(old) is nn.Conv2d:
        new = nn.Conv2d(old.in_channels, num_classes, old.kernel_size, stride=old.stride, padding=old.padding,
                        bias=old.bias is not None)
    elif type(old) is nn.Linear:
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    elif type(old) is nn.BatchNorm2d:
        new = nn.BatchNorm2d(num_classes, eps=old.eps, momentum=old.momentum, affine=old.affine,
                             track_running_stats=old.track_running_stats)
    else:
        raise TypeError(f"cannot resize a head layer of type {type(old).__name__}")
    return _like(old, new)


class FeatureClassifier(nn.Module):
    """Base of every model here: ``forward(x) = head(forward_features(x))``.

    Subclasses define ``forward_features(x) -> (N, C)`` flat features, and as class attributes
    ``head_layers`` (the names of the modules after the features, in order), ``conv_head`` (True
    when those run on a (N, C, 1, 1) map, as 1x1 Conv2d + BatchNorm2d heads do) and
    ``feature_layers`` (module names worth taking features from; "features" means the output
    of ``forward_features``).

    ``head`` is read-only (a view over ``head_layers``): change the head with ``replace_head`` or by
    assigning the named layers themselves (``model.fc = ...``), which keeps checkpoint names.
    """

    head_layers: tuple[str, ...] = ()
    conv_head: bool = False
    feature_layers: tuple[str, ...] = ("features",)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_head(self, f: torch.Tensor) -> torch.Tensor:
        x = f[:, :, None, None] if self.conv_head else f
        for name in self.head_layers:
            x = getattr(self, name)(x)
        return x.flatten(1) if self.conv_head else x

    @property
    def head(self) -> nn.Module:
        """The module from ``forward_features``'s output to the logits (shares the model's layers)."""
        mods = [getattr(self, n) for n in self.head_layers]
        if not self.conv_head and len(mods) == 1:
            return mods[0]
        return FlatConvHead(*mods) if self.conv_head else nn.Sequential(*mods)

    def replace_head(self, num_classes: int) -> "FeatureClassifier":
        """Fresh head layers with ``num_classes`` outputs (same device, dtype and mode); returns self."""
        if int(num_classes) != num_classes or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        for name in self.head_layers:
            setattr(self, name, resized(getattr(self, name), int(num_classes)))
        return self
