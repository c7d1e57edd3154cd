"""Taking features from a model, and giving it a new head.

Every model in ``addernet.models`` (and ``TinyNet``) has ``forward_features(x)`` (the flat
features its head takes), ``head`` and ``feature_layers`` (the module names worth probing;
"features" stands for ``forward_features``'s output).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

FEATURES = "features"


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the model as .module.
    while not hasattr(model, "forward_features") and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    if not hasattr(model, "forward_features"):
        raise TypeError(f"{type(model).__name__} has no forward_features(x); the models of addernet.models "
                        "and TinyNet have one")
    return model


class FeatureExtractor:
    """``extractor(x) -> {layer: output}``, each output cloned right after its module runs, so that a
    later in-place op (an in-place ReLU) cannot change it. Runs ``forward_features`` only (the head
    is not run). Gradients flow through the outputs; wrap the call in ``torch.no_grad()`` when
    none are wanted."""

    def __init__(self, model: nn.Module, layers: str | Iterable[str]):
        self.model = _unwrap(model)
        self.layers = (layers,) if isinstance(layers, str) else tuple(layers)
        if not self.layers:
            raise ValueError("feature_extractor needs at least one layer name")
        offered = ", ".join(getattr(self.model, "feature_layers", ()))
        self._modules: dict[str, nn.Module] = {}
        for name in self.layers:
            if name == FEATURES:
                continue
            try:
                self._modules[name] = self.model.get_submodule(name)
            except AttributeError:
                raise ValueError(f"{type(self.model).__name__} has no module {name!r}; "
                                 f"its feature layers are {offered}") from None

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        got: dict[str, list[torch.Tensor]] = {n: [] for n in self._modules}

        def hook(name):
            def record(module, args, output):
                got[name].append(output.clone())
            return record

        handles = [m.register_forward_hook(hook(n)) for n, m in self._modules.items()]
        try:
            feats = self.model.forward_features(x)
        finally:
            for h in handles:
                h.remove()
        out: dict[str, torch.Tensor] = {}
        for name in self.layers:
            if name == FEATURES:
                out[name] = feats
                continue
            if len(got[name]) != 1:
                why = "did not run" if not got[name] else f"ran {len(got[name])} times"
                raise ValueError(f"module {name!r} {why} in forward_features, so it has no one output to "
                                 f"take; its feature layers are {', '.join(self.model.feature_layers)}")
            out[name] = got[name][0]
        return out

    def __repr__(self) -> str:
        return f"FeatureExtractor({type(self.model).__name__}, layers={self.layers})"


def feature_extractor(model: nn.Module, layers: str | Iterable[str]) -> Callable[[torch.Tensor], dict]:
    """A callable ``x -> {name: tensor}`` with the outputs of ``layers`` (module names, or "features"
    for ``model.forward_features(x)``), see ``FeatureExtractor``. ``model.feature_layers`` lists
    the useful ones; e.g. resnet20: layer1, layer2, layer3 (stage maps) and features (64 pooled)."""
    return FeatureExtractor(model, layers)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised head with ``num_classes`` outputs (in place; returns it).

    The new layers have the old ones' device, dtype and train/eval mode; the features are kept.
    """
    inner = _unwrap(model)
    if not hasattr(inner, "replace_head"):
        raise TypeError(f"{type(inner).__name__} does not say which layers are its head")
    inner.replace_head(num_classes)
    return model
