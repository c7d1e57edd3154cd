"""Load checkpoints saved by the official AdderNet code (huawei-noah/AdderNet).

The official models differ from ours in names only: they were saved from ``nn.DataParallel``
(a ``module.`` prefix) and their ``adder2d`` layer stores its weight as ``adder`` and its bias as
``b``. Our module names (conv1, bn1, layerK.i.conv1, ..., downsample.0/1, fc, bn2) are theirs.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from ..nn import AdderConv2d
from .registry import canonical_name, get_model

__all__ = ["load_official", "OfficialCheckpointError"]

_WRAPPERS = ("state_dict", "model")
_RENAMES = {"adder": "weight", "b": "bias"}
# Old checkpoints predate BatchNorm's counter; the counter does not affect inference.
_OPTIONAL_SUFFIX = ".num_batches_tracked"
# The official code's BatchNorms are PyTorch's (momentum 0.1): fine-tuning a loaded model goes on
# as the official code would. The logits never depend on it, only later running statistics.
OFFICIAL_BN_MOMENTUM = 0.1


class OfficialCheckpointError(KeyError, ValueError):
    """The checkpoint's keys do not fit the architecture. Both a KeyError and a ValueError."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def load_official(path_or_state_dict: Any, arch: str, strict: bool = True, **model_kwargs) -> nn.Module:
    """Build ``get_model(arch, kind='adder', bn_momentum=0.1, **model_kwargs)`` and load an official checkpoint.

    ``path_or_state_dict``: a file path (or file object), always read with
    ``torch.load(..., map_location='cpu', weights_only=True)`` so that a checkpoint can never run
    code, or an already loaded mapping. A ``{'state_dict': ...}`` or ``{'model': ...}`` wrapper is
    unwrapped. ``num_classes`` and ``in_channels``, unless given, are read from the checkpoint's
    last and first layers (so a CIFAR-100 checkpoint needs no extra argument).

    With ``strict`` (default) any missing or unexpected key raises ``OfficialCheckpointError``
    listing all of them, sorted; only BatchNorm ``num_batches_tracked`` buffers may be absent.
    ``strict=False`` loads the keys that fit and ignores the rest. Shape mismatches always raise.
    The model is returned in training mode, as built; call ``.eval()`` for inference.
    """
    arch = canonical_name(arch)
    state = _read(path_or_state_dict)
    model_kwargs.setdefault("kind", "adder")
    model_kwargs.setdefault("bn_momentum", OFFICIAL_BN_MOMENTUM)
    model = _uncentred(get_model(arch, **model_kwargs))
    mapped, origin = _rename(state, model)

    inferred = _infer_shape_kwargs(model, mapped, model_kwargs)
    if inferred:
        model = _uncentred(get_model(arch, **model_kwargs, **inferred))

    expected = model.state_dict()
    missing = sorted(k for k in expected if k not in mapped and not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = sorted(origin[k] for k in mapped if k not in expected)
    if strict and (missing or unexpected):
        parts = [f"checkpoint does not fit {arch}:"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        raise OfficialCheckpointError("\n".join(parts))
    model.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)
    return model


def _uncentred(model: nn.Module) -> nn.Module:
    # The official running statistics were taken on the raw outputs -sum|x - w|: keep them raw so
    # that the logits are the official ones, bit for bit (fine-tuning in a loop that evaluates
    # before its lr reaches 0 then needs ``recalibrate_bn``, see docs/training.md).
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            m.bn_centered = False
    return model


def _read(src: Any) -> Mapping[str, Any]:
    if isinstance(src, Mapping):
        state = src
    else:
        if isinstance(src, (str, os.PathLike)) and not os.path.isfile(src):
            raise FileNotFoundError(f"no checkpoint file at {os.fspath(src)!r}")
        state = torch.load(src, map_location="cpu", weights_only=True)
    # Training scripts wrap the weights with epoch/accuracy/optimizer entries, sometimes twice.
    while isinstance(state, Mapping):
        inner = next((state[k] for k in _WRAPPERS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping):
        raise TypeError(f"a checkpoint must hold a state dict (a mapping), got {type(state).__name__}")
    return state


def _rename(state: Mapping[str, Any], model: nn.Module) -> tuple[dict[str, Any], dict[str, str]]:
    """Official key -> our key. Returns the renamed dict and, per new key, the key it came from."""
    adders = {name for name, m in model.named_modules() if isinstance(m, AdderConv2d)}
    mapped: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = str(key)
        while new.startswith("module."):
            new = new[len("module."):]
        owner, _, leaf = new.rpartition(".")
        # Only rename inside adder layers: elsewhere 'b' or 'adder' would be a genuine mismatch.
        if owner in adders and leaf in _RENAMES:
            new = f"{owner}.{_RENAMES[leaf]}"
        if new in mapped:
            raise OfficialCheckpointError(f"checkpoint keys {origin[new]!r} and {key!r} both map to {new!r}")
        mapped[new] = value
        origin[new] = str(key)
    return mapped, origin


def _infer_shape_kwargs(model: nn.Module, mapped: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, int]:
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear, AdderConv2d))]
    if not layers:
        return {}
    out: dict[str, int] = {}
    (first, first_m), (last, last_m) = layers[0], layers[-1]
    w = mapped.get(f"{last}.weight")
    if "num_classes" not in given and isinstance(w, torch.Tensor) and w.dim() >= 2:
        if w.shape[0] != last_m.weight.shape[0]:
            out["num_classes"] = int(w.shape[0])
    w = mapped.get(f"{first}.weight")
    if "in_channels" not in given and isinstance(w, torch.Tensor) and w.dim() >= 2:
        if w.shape[1] != first_m.weight.shape[1]:
            out["in_channels"] = int(w.shape[1] * getattr(first_m, "groups", 1))
    return out
