"""Views of a dataset: other labels (a class subset, pseudo-labels, label noise), another transform.

They wrap any map-style dataset whose items are (image, label); the images are read from it
untouched, so the same loading code serves every set.
"""

import numpy as np
import torch
from torch.utils.data import Dataset


def dataset_targets(dataset):
    """The int64 labels of a dataset: its ``targets`` when it has them, else read item by item
    (every image is loaded once: slow for a large set with no ``targets``)."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]
    if isinstance(targets, torch.Tensor):
        targets = targets.detach().cpu().numpy()
    targets = np.asarray(targets)
    if targets.ndim != 1 or len(targets) != len(dataset) or (targets.size and targets.dtype.kind not in "iu"):
        raise ValueError(f"{type(dataset).__name__}: expected {len(dataset)} integer labels, "
                         f"got {targets.dtype} of shape {targets.shape}")
    return targets.astype(np.int64)


def _int_array(values, what):
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"{what} must be a 1-d sequence of integers, got {arr.dtype} of shape {arr.shape}")
    return arr.astype(np.int64)


def select_classes(targets, classes, num_classes=None):
    """(indices of the samples whose label is in ``classes``, their labels renumbered 0..k-1 in the
    order ``classes`` lists them)."""
    classes = _int_array(classes, "classes")
    if classes.size == 0:
        raise ValueError("classes must name at least one class")
    if len(np.unique(classes)) != len(classes):
        raise ValueError(f"classes must not repeat, got {classes.tolist()}")
    if num_classes is not None and (classes.min() < 0 or classes.max() >= num_classes):
        raise ValueError(f"classes must lie in 0..{num_classes - 1}, got {classes.tolist()}")
    lookup = {int(c): i for i, c in enumerate(classes)}
    indices = np.flatnonzero(np.isin(targets, classes))
    absent = sorted(set(lookup) - set(np.unique(targets[indices]).tolist()))
    if absent:
        raise ValueError(f"classes {absent} have no samples in this split")
    new = np.array([lookup[int(t)] for t in targets[indices]], dtype=np.int64)
    return indices, new


def symmetric_noise(targets, p, num_classes, seed=0):
    """Each label is, with probability ``p`` and independently, replaced by one drawn uniformly
    from the *other* ``num_classes - 1`` classes (so a noisy label never equals the true one).
    Reproducible: ``np.random.default_rng(seed)`` draws the flips, then the offsets."""
    targets = _int_array(targets, "targets")
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"label_noise must lie in [0, 1], got {p}")
    if p > 0 and num_classes < 2:
        raise ValueError("label noise needs at least 2 classes")
    if targets.size and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1} to add noise")
    rng = np.random.default_rng(seed)
    flip = rng.random(len(targets)) < p
    offsets = rng.integers(1, max(num_classes, 2), size=len(targets))
    return np.where(flip, (targets + offsets) % num_classes, targets).astype(np.int64)


class RelabelledDataset(Dataset):
    """``dataset`` restricted to ``indices`` (all if None), with ``targets`` as its labels.

    ``clean_targets`` are the labels before any noise (``noisy`` marks where they differ),
    ``source_indices`` maps each item back to ``dataset``, and ``num_classes`` is the label range.
    """

    def __init__(self, dataset, targets, indices=None, clean_targets=None, classes=None, num_classes=None):
        self.dataset = dataset
        self.source_indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.targets = _int_array(targets, "targets")
        if len(self.targets) != len(self.source_indices):
            raise ValueError(f"{len(self.targets)} labels for {len(self.source_indices)} samples")
        self.clean_targets = self.targets if clean_targets is None else _int_array(clean_targets, "clean_targets")
        self.classes = classes
        if num_classes is None:
            num_classes = len(classes) if classes is not None else int(self.targets.max(initial=-1)) + 1
        self.num_classes = int(num_classes)

    @property
    def noisy(self):
        return self.targets != self.clean_targets

    def __len__(self):
        return len(self.source_indices)

    def __getitem__(self, index):
        img, _ = self.dataset[int(self.source_indices[index])]
        return img, int(self.targets[index])

    def raw(self, index):
        img, _ = self.dataset.raw(int(self.source_indices[index]))
        return img, int(self.targets[index])

    def __repr__(self):
        return f"RelabelledDataset(n={len(self)}, of={self.dataset!r})"


class TransformedDataset(Dataset):
    """``dataset`` with ``transform`` applied to each image."""

    def __init__(self, dataset, transform):
        self.dataset = dataset
        self.transform = transform
        for attr in ("targets", "classes"):
            if hasattr(dataset, attr):
                setattr(self, attr, getattr(dataset, attr))

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        img, label = self.dataset[index]
        return self.transform(img), label

    def __repr__(self):
        return f"TransformedDataset({self.dataset!r}, transform={self.transform!r})"


def relabel(dataset, *, classes=None, labels=None, label_noise=0.0, noise_seed=0, num_classes=None):
    """``dataset`` with a class subset (renumbered 0..k-1 in the order given), replacement labels
    (pseudo-labels, one per sample after the subset) and symmetric label noise, in that order.
    Returns ``dataset`` itself when none is asked for. ``num_classes``: the label range before
    any change (for checks and for the noise when no subset or labels set it)."""
    if classes is None and labels is None and not label_noise:
        return dataset
    targets = dataset_targets(dataset)
    indices = None
    names = getattr(dataset, "classes", None)
    if classes is not None:
        indices, targets = select_classes(targets, classes, num_classes)
        kept = _int_array(classes, "classes")
        num_classes = len(kept)
        if names is not None and len(names) > kept.max():
            names = [names[int(c)] for c in kept]
    if labels is not None:
        labels = _int_array(labels, "labels")
        if len(labels) != len(targets):
            raise ValueError(f"labels: {len(labels)} given for {len(targets)} samples")
        if labels.size and labels.min() < 0:
            raise ValueError("labels must be non-negative")
        targets = labels
        num_classes = int(labels.max()) + 1 if labels.size else 0
        names = None
    clean = targets
    if num_classes is None:
        num_classes = int(targets.max(initial=-1)) + 1
    if label_noise:
        targets = symmetric_noise(targets, label_noise, num_classes, noise_seed)
    return RelabelledDataset(dataset, targets, indices, clean, names, num_classes)
