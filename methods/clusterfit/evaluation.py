"""Stage 5: the linear probe on frozen features, with the true labels.

N_pre, N_cf and a random-init network go through exactly the same function: the same layer, the
same probe (``methods.common.linear_probe``) and the same settings, trained on the train split's
features and scored on the held-out split.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from addernet.data import dataset_info, get_dataset
from methods.common import linear_probe
from methods.common.deprecation import renamed_keyword

from .features import cluster_features


def plain_loaders(data, root=None, batch_size: int = 256, num_workers: int = 0):
    """(train, test, info): unshuffled, unaugmented, normalised, true labels; row i is image i."""
    common = dict(batch_size=batch_size, shuffle=False, num_workers=num_workers)
    train = DataLoader(get_dataset(data, root, train=True, augment=False), **common)
    test = DataLoader(get_dataset(data, root, train=False, augment=False), **common)
    info = dataset_info(data, root) if isinstance(data, str) else None
    return train, test, info


def probe_accuracy(model: nn.Module, train_loader: DataLoader, test_loader: DataLoader, *,
                   layer: str = "features", device="cpu", recalibrate: Optional[bool] = None,
                   recalibrate_batches: int = 50, solver: str = "auto", seed: int = 0, progress: bool = False,
                   backend: Optional[str] = None, **probe_kw) -> float:
    """Accuracy (fraction) of a linear probe on ``model``'s frozen ``layer`` features: fitted on
    ``train_loader``'s images and labels, scored on ``test_loader``'s. BatchNorm statistics are
    re-estimated on the train images first when ``recalibrate`` (None: adder models only; pass True
    for a random-init network, whose running statistics were never estimated). ``solver``: the
    probe's (``linear_probe``; ``backend=`` is its old name, deprecated)."""
    solver = renamed_keyword("probe_accuracy", "backend", "solver", backend, solver, "auto")
    tr_x, tr_y, _ = cluster_features(model, train_loader, layer=layer, device=device, normalize=False,
                                     recalibrate=recalibrate, recalibrate_batches=recalibrate_batches,
                                     progress=progress)
    # BN is already recalibrated (or deliberately left alone): the test pass must not redo it.
    te_x, te_y, _ = cluster_features(model, test_loader, layer=layer, device=device, normalize=False,
                                     recalibrate=False, progress=progress)
    if not torch.isfinite(tr_x).all() or not torch.isfinite(te_x).all():
        raise FloatingPointError(f"{type(model).__name__} gives non-finite {layer!r} features; "
                                 f"the probe cannot score it")
    return float(linear_probe(tr_x, tr_y, te_x, te_y, solver=solver, seed=seed, **probe_kw))
