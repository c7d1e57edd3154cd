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


class _Stop(Exception):
    """Raised by a hook to end the forward pass once every wanted module has run."""


def _unwrap(model: nn.Module, need_features: bool = True) -> nn.Module:
    # DistributedDataParallel / DataParallel keep the model as .module.
    while not hasattr(model, "forward_features") and isinstance(getattr(model, "module", None), nn.Module):
        model = model.module
    if need_features and not hasattr(model, "forward_features"):
        raise TypeError(f"{type(model).__name__} has no forward_features(x), so it has no '{FEATURES}' to take; "
                        "the models of addernet.models have one")
    return model


class FeatureExtractor:
    """``extractor(x) -> {layer: output}``, each output cloned right after its module runs, so that a
    later in-place op (an in-place ReLU) cannot change it. Runs ``forward_features`` only (the head
    is not run); a model without it (any ``nn.Module``) runs its forward, and has no "features".
    Gradients flow through the outputs; wrap the call in ``torch.no_grad()`` when none are wanted.

    ``stop=True`` ends the forward pass as soon as every named module has run once, and takes each
    one's first output: the rest of the model is not computed, and a module called more than once
    has an answer (its first call) instead of an error."""

    def __init__(self, model: nn.Module, layers: str | Iterable[str], *, stop: bool = False):
        self.layers = (layers,) if isinstance(layers, str) else tuple(layers)
        if not self.layers:
            raise ValueError("feature_extractor needs at least one layer name")
        self.model = _unwrap(model, FEATURES in self.layers)
        self.stop = stop
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
        stop = self.stop and FEATURES not in self.layers

        def hook(name):
            def record(module, args, output):
                if not torch.is_tensor(output):
                    raise TypeError(f"module {name!r} returned {type(output).__name__}, not a tensor")
                if not (self.stop and got[name]):
                    got[name].append(output.clone())
                if stop and all(got.values()):
                    raise _Stop
            return record

        run = getattr(self.model, "forward_features", self.model)
        handles = [m.register_forward_hook(hook(n)) for n, m in self._modules.items()]
        feats = None
        try:
            feats = run(x)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
        out: dict[str, torch.Tensor] = {}
        where = "forward_features" if run is not self.model else "the forward pass"
        for name in self.layers:
            if name == FEATURES:
                out[name] = feats
                continue
            if not got[name] or (len(got[name]) > 1 and not self.stop):
                why = "did not run" if not got[name] else f"ran {len(got[name])} times"
                raise ValueError(f"module {name!r} {why} in {where}, so it has no one output to take; "
                                 f"its feature layers are {', '.join(getattr(self.model, 'feature_layers', ()))}")
            out[name] = got[name][0]
        return out

    def __repr__(self) -> str:
        return f"FeatureExtractor({type(self.model).__name__}, layers={self.layers})"


def feature_extractor(model: nn.Module, layers: str | Iterable[str], *,
                      stop: bool = False) -> Callable[[torch.Tensor], dict]:
    """A callable ``x -> {name: tensor}`` with the outputs of ``layers`` (module names, or "features"
    for ``model.forward_features(x)``), see ``FeatureExtractor`` (and its ``stop``).
    ``model.feature_layers`` lists the useful ones; e.g. resnet20: layer1, layer2, layer3 (stage
    maps) and features (64 pooled)."""
    return FeatureExtractor(model, layers, stop=stop)


def replace_head(model: nn.Module, num_classes: int) -> nn.Module:
    """Give ``model`` a freshly initialised head with ``num_classes`` outputs (in place; returns it).

    The new layers have the old ones' device, dtype and train/eval mode; the features are kept.
    """
    inner = _unwrap(model)
    if not hasattr(inner, "replace_head"):
        raise TypeError(f"{type(inner).__name__} does not say which layers are its head")
    inner.replace_head(num_classes)
    return model
