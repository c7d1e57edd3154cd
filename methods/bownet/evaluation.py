"""How good a representation is, with frozen features: linear probes (all labels, and k per class)
and N-way K-shot episodes with cosine prototypes, all from ``methods.common``."""
from __future__ import annotations

import torch
from torch import nn

from addernet.models import recalibrate_bn

from ..common import extract_features, fewshot_eval, linear_probe


def per_class_subset(labels: torch.Tensor, per_class: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``per_class`` examples of every class, drawn with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < per_class:
            raise ValueError(f"class {c} has {len(idx)} training examples, fewer than {per_class} per class")
        out.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    return torch.cat(out).sort().values


def frozen_features(model: nn.Module, loader, device="cpu", progress: bool = False):
    """(features (N, D) float, labels (N,)) from ``model.forward_features`` in eval mode."""
    was = model.training
    model.eval()
    try:
        feats, labels = extract_features(model.forward_features, loader, device, progress=progress)
    finally:
        model.train(was)
    return feats.flatten(1).float().cpu(), labels.cpu()


def evaluate_representation(model: nn.Module, train_loader, test_loader, *, seed: int = 0, per_class: int = 10,
                            n_way: int = 10, shots=(1, 5), episodes: int = 500, n_query: int = 15,
                            recalibrate: bool = True, device="cpu", progress: bool = False) -> dict:
    """Fractions: 'probe_all' (probe fitted on every training label), f'probe_{per_class}' (on
    ``per_class`` labels per class) - both scored on the test set - and f'fewshot_{k}' with
    f'fewshot_{k}_ci95' for each k in ``shots``, episodes drawn from the test set's features.

    ``recalibrate``: first re-estimate the BatchNorm statistics on the clean training images (every
    stage, every kind, alike). The pretext tasks trained on rotated or perturbed images, and a
    briefly trained adder network's running statistics lag so far that its eval-mode features can
    be constant (a RotNet adder after 32 steps probed at chance, 10%, without it)."""
    if recalibrate:
        recalibrate_bn(model, train_loader, batches=50, device=device)
    tr_x, tr_y = frozen_features(model, train_loader, device, progress)
    te_x, te_y = frozen_features(model, test_loader, device, progress)
    sub = per_class_subset(tr_y, per_class, seed)
    row = {"probe_all": linear_probe(tr_x, tr_y, te_x, te_y, seed=seed),
           f"probe_{per_class}": linear_probe(tr_x[sub], tr_y[sub], te_x, te_y, seed=seed)}
    for k in shots:
        mean, ci = fewshot_eval(te_x, te_y, n_way=n_way, k_shot=k, n_query=n_query, episodes=episodes, seed=seed)
        row[f"fewshot_{k}"], row[f"fewshot_{k}_ci95"] = mean, ci
    return row
