"""The validation split of the methods' second version (issue 27): carved once from the training images.

Every choice from a pre-registered grid (a weight, K, a layer, an epoch) is scored on the validation
images; the test images are scored once, with the chosen value. The split is stratified by label and
drawn from the *whole* training set with its own seed (``SPLIT_SEED``), independent of the run's
seed and of any class subset, so an image is a validation image in every arm, every seed and every
class subset (ClusterFit's "validation of classes 0-4" is the validation images labelled 0-4).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from torch.utils.data import Dataset

from addernet.data import dataset_info, get_dataset, make_loaders

SPLIT_SEED = 20270
VAL_FRACTION = 0.2
SPLITS = ("val", "test")


class IndexedSubset(Dataset):
    """Rows ``indices`` of ``dataset``, with their labels as ``targets`` (what class selection reads)."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.targets = _targets(dataset)[self.indices]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[int(self.indices[i])]


def _targets(dataset):
    t = getattr(dataset, "targets", None)
    if t is None:
        t = [dataset[i][1] for i in range(len(dataset))]
    return np.asarray(t, dtype=np.int64)


def validation_indices(targets, *, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED):
    """(fit indices, validation indices), sorted: round(fraction * count) rows of every class, at random
    (seeded). Every class keeps at least one row on each side."""
    targets = np.asarray(targets)
    if targets.ndim != 1 or targets.size == 0:
        raise ValueError(f"targets must be a non-empty 1-D array of labels, got shape {targets.shape}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(targets):
        rows = np.flatnonzero(targets == c)
        if rows.size < 2:
            raise ValueError(f"class {int(c)} has {rows.size} training image(s); a split needs 2 or more")
        k = min(max(1, int(round(fraction * rows.size))), rows.size - 1)
        val.append(rng.choice(rows, size=k, replace=False))
    val = np.sort(np.concatenate(val))
    fit = np.setdiff1d(np.arange(targets.size), val)
    return fit, val


def validation_split(dataset, *, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED):
    """(fit part, validation part) of a map-style (image, label) dataset, stratified by label."""
    fit, val = validation_indices(_targets(dataset), fraction=fraction, seed=seed)
    return IndexedSubset(dataset, fit), IndexedSubset(dataset, val)


def split_loaders(data: str, root, batch_size: int, *, evaluate_on: str, seed: int = 0, classes=None,
                  normalize: bool = False, fraction: float = VAL_FRACTION, split_seed: int = SPLIT_SEED):
    """(train loader, evaluation loader, info) of a named set with the validation images held out.

    The train loader always serves the fit part (training never sees a validation image); the
    evaluation loader serves the validation part (``evaluate_on="val"``, for choices from a grid) or
    the test split (``"test"``, once, for the chosen value). ``classes`` selects and renumbers on both,
    as ``make_loaders`` does; images are unaugmented (the methods augment batches themselves)."""
    if evaluate_on not in SPLITS:
        raise ValueError(f"evaluate_on must be one of {SPLITS}, got {evaluate_on!r}")
    train = get_dataset(data, root, train=True, augment=False, normalize=normalize)
    fit, val = validation_split(train, fraction=fraction, seed=split_seed)
    held = val if evaluate_on == "val" else get_dataset(data, root, train=False, augment=False, normalize=normalize)
    info = dataclasses.replace(dataset_info(data), normalized=bool(normalize))
    return make_loaders((fit, held), None, batch_size, seed=seed, classes=classes, info=info)
