"""Train/test DataLoaders whose order and augmentation depend only on ``seed``."""

import dataclasses

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from .info import DatasetInfo
from .registry import dataset_info, dataset_name, get_dataset, is_dataset_name


def _infer_info(dataset, num_classes):
    img, _ = dataset[0]
    if not isinstance(img, torch.Tensor) or img.dim() != 3:
        raise ValueError(f"{type(dataset).__name__}: items must be (C x H x W tensor, label) to be batched, "
                         f"got {type(img).__name__} of shape {tuple(getattr(img, 'shape', ()))}")
    return DatasetInfo(type(dataset).__name__, num_classes, int(img.shape[0]), tuple(img.shape[1:]), None, None)


def _num_classes(dataset):
    if hasattr(dataset, "num_classes"):
        return dataset.num_classes
    names = getattr(dataset, "classes", None)
    if names is not None:
        return len(names)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets):
        return int(np.max(np.asarray(targets))) + 1
    return None


def make_loaders(name_or_dataset, root, batch_size, num_workers=0, seed=0, distributed=False,
                 augment=True, *, num_replicas=None, rank=None, drop_last=False, classes=None, labels=None,
                 label_noise=0.0, noise_seed=0, transform=None, test_transform=None, normalize=True,
                 info=None):
    """Return ``(train_loader, test_loader, info)``.

    ``name_or_dataset``: a dataset name (see ``DATASETS``), or dataset objects: one (then
    ``test_loader`` is None) or a ``(train, test)`` pair (test may be None); ``root`` is then
    unused. ``classes`` applies to both splits; ``labels`` (pseudo-labels) and ``label_noise``
    to the train split only; ``transform`` too (the test split of a named set gets the recipe's
    evaluation pipeline, or ``test_transform``); ``normalize=False`` gives pixel-space [0, 1]
    images (see ``get_dataset``). ``info`` describes the data: for a named set it comes from
    ``dataset_info`` (``num_classes`` set by ``classes`` or ``labels``, ``normalized`` by
    ``normalize``); for objects it is this argument or is read from the first item (mean/std
    None).

    Reproducibility: shuffling uses a ``torch.Generator`` seeded from ``seed``,
    and DataLoader derives each worker's torch seed from that generator, so
    worker-side augmentation repeats too. With ``num_workers=0`` augmentation
    runs in the calling process on torch's global RNG: call
    ``torch.manual_seed`` as well for bit-identical augmented batches.

    ``distributed=True``: the train set gets a shuffling ``DistributedSampler``
    (seeded with ``seed``; call ``train_loader.sampler.set_epoch(epoch)`` every
    epoch or each epoch repeats the same order). The test set gets a
    ``DistributedSampler(shuffle=False)``, so each rank evaluates a strided
    shard; it pads the last shard by repeating samples so all ranks have equal
    length, hence summed per-rank metrics over-count by up to world_size - 1
    samples unless ``len(test_set)`` divides by the world size.
    ``num_replicas``/``rank`` default to the initialised process group.
    ``batch_size`` is per process.
    """
    label_kw = dict(labels=labels, label_noise=label_noise, noise_seed=noise_seed)
    if is_dataset_name(name_or_dataset):
        name = dataset_name(name_or_dataset)
        train_set = get_dataset(name, root, train=True, augment=augment, classes=classes, transform=transform,
                                normalize=normalize, **label_kw)
        test_set = get_dataset(name, root, train=False, augment=False, classes=classes, transform=test_transform,
                               normalize=normalize)
        if info is None:
            info = dataset_info(name)
            if info.num_classes is None and hasattr(train_set, "classes"):
                info = dataclasses.replace(info, num_classes=len(train_set.classes))
            info = dataclasses.replace(info, normalized=bool(normalize))
    else:
        pair = name_or_dataset if isinstance(name_or_dataset, (tuple, list)) else (name_or_dataset, None)
        if len(pair) != 2:
            raise ValueError(f"make_loaders takes a dataset name, a dataset, or a (train, test) pair; "
                             f"got a sequence of {len(pair)}")
        train_set = get_dataset(pair[0], classes=classes, transform=transform, **label_kw)
        test_set = None if pair[1] is None else get_dataset(pair[1], classes=classes, transform=test_transform)
    if classes is not None or labels is not None:
        n = _num_classes(train_set)
        if info is not None and info.num_classes != n:
            info = dataclasses.replace(info, num_classes=n)
    if info is None:
        info = _infer_info(train_set, _num_classes(train_set))

    common = dict(batch_size=batch_size, num_workers=num_workers,
                  pin_memory=torch.cuda.is_available(),
                  persistent_workers=num_workers > 0)
    test_loader = None
    if distributed:
        train_sampler = DistributedSampler(train_set, num_replicas=num_replicas, rank=rank,
                                           shuffle=True, seed=seed, drop_last=drop_last)
        # Distinct worker seeds per rank, else every rank augments identically.
        gen = torch.Generator().manual_seed(seed * 100003 + train_sampler.rank)
        train_loader = DataLoader(train_set, sampler=train_sampler, generator=gen,
                                  drop_last=drop_last, **common)
        if test_set is not None:
            test_sampler = DistributedSampler(test_set, num_replicas=num_replicas, rank=rank, shuffle=False)
            test_loader = DataLoader(test_set, sampler=test_sampler, **common)
    else:
        gen = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(train_set, shuffle=True, generator=gen,
                                  drop_last=drop_last, **common)
        if test_set is not None:
            test_loader = DataLoader(test_set, shuffle=False, **common)
    return train_loader, test_loader, info
