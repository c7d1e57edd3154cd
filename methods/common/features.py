"""Frozen features of a whole dataset: the output of a model, a function, or a named layer.

With ``layer`` the model runs up to that module only (``addernet.models.feature_extractor`` with
``stop=True``): it takes a clone of the module's output (so an in-place ReLU after it cannot change
it) and stops the forward pass there. A module called at more than one site of the forward pass
yields its first call's output; ``layer="features"`` is ``forward_features``' output.
"""
import torch
from tqdm.auto import tqdm

from addernet.models import feature_extractor
from addernet.models.features import FEATURES

from .modes import eval_mode


def _layer_fn(model, layer):
    """x -> the output of module ``layer`` (addernet's feature extractor, stopping the forward there)."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"layer={layer!r} needs an nn.Module, got {type(model).__name__}")
    modules = dict(model.named_modules())
    if layer not in modules and layer != FEATURES:
        points = getattr(model, "feature_layers", None)
        hint = f"its feature points are {list(points)}" if points else \
            f"its modules include {[n for n in modules if n][:20]}"
        raise ValueError(f"model has no module named {layer!r}; {hint}")
    extract = feature_extractor(model, layer, stop=True)
    return lambda x: extract(x)[layer].detach()


def _flat(out, pool):
    if out.ndim == 4 and pool == "avg":
        return out.mean((2, 3))
    return out.flatten(1) if out.ndim > 2 else out


def extract_features(model_or_fn, loader, device="cpu", *, layer=None, pool="flatten", progress=False):
    """Run model_or_fn over loader (batches (x, y, ...) or x alone) in eval mode under no_grad.

    Eval mode is set (and each submodule's mode restored afterwards) for an nn.Module or a bound method of
    one (model.forward_features); a plain function is the caller's to put in eval mode. The model must
    already be on device; inputs are moved there.

    Returns (feats float32 (n, d) on CPU, labels int64 (n,) on CPU, float if the batches carry soft
    targets, or None when they carry no labels).
    layer: a module name of the model (see model.feature_layers) whose output to take instead of the
    model's. pool: how a 4-D map becomes a vector, "flatten" (C*H*W) or "avg" (global average, C).
    """
    if pool not in ("flatten", "avg"):
        raise ValueError(f"pool must be 'flatten' or 'avg', got {pool!r}")
    if not callable(model_or_fn):
        raise TypeError(f"model_or_fn must be a model or a function, got {type(model_or_fn).__name__}")
    fn = model_or_fn if layer is None else _layer_fn(model_or_fn, layer)
    device = torch.device(device)
    feats, labels = [], []
    with eval_mode(model_or_fn), torch.no_grad():
        for batch in tqdm(loader, desc="features", disable=not progress, leave=False):
            if isinstance(batch, (tuple, list)):
                x, y = batch[0], (batch[1] if len(batch) > 1 else None)
            else:
                x, y = batch, None
            out = fn(x.to(device))
            if isinstance(out, dict):
                raise TypeError("the model returned a dict; pass a function that returns one tensor, "
                                "or a module name as layer=")
            feats.append(_flat(out, pool).float().cpu())
            if y is not None:
                y = torch.as_tensor(y).cpu()
                labels.append(y.float() if y.is_floating_point() else y.long())  # soft targets stay soft
    if not feats:
        raise ValueError("the loader yielded no batches")
    if labels and len(labels) != len(feats):
        raise ValueError("some batches carry labels and some do not")
    return torch.cat(feats), (torch.cat(labels) if labels else None)
