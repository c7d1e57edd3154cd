"""Train/test DataLoaders whose order and augmentation depend only on ``seed``."""

import dataclasses

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from .registry import dataset_info, get_dataset


def make_loaders(name, root, batch_size, num_workers=0, seed=0, distributed=False,
                 augment=True, *, num_replicas=None, rank=None, drop_last=False):
    """Return ``(train_loader, test_loader, info)``.

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
    train_set = get_dataset(name, root, train=True, augment=augment)
    test_set = get_dataset(name, root, train=False, augment=False)
    info = dataset_info(name)
    if info.num_classes is None and hasattr(train_set, "classes"):
        info = dataclasses.replace(info, num_classes=len(train_set.classes))

    common = dict(batch_size=batch_size, num_workers=num_workers,
                  pin_memory=torch.cuda.is_available(),
                  persistent_workers=num_workers > 0)
    if distributed:
        train_sampler = DistributedSampler(train_set, num_replicas=num_replicas, rank=rank,
                                           shuffle=True, seed=seed, drop_last=drop_last)
        test_sampler = DistributedSampler(test_set, num_replicas=num_replicas, rank=rank,
                                          shuffle=False)
        # Distinct worker seeds per rank, else every rank augments identically.
        gen = torch.Generator().manual_seed(seed * 100003 + train_sampler.rank)
        train_loader = DataLoader(train_set, sampler=train_sampler, generator=gen,
                                  drop_last=drop_last, **common)
        test_loader = DataLoader(test_set, sampler=test_sampler, **common)
    else:
        gen = torch.Generator().manual_seed(seed)
        train_loader = DataLoader(train_set, shuffle=True, generator=gen,
                                  drop_last=drop_last, **common)
        test_loader = DataLoader(test_set, shuffle=False, **common)
    return train_loader, test_loader, info
