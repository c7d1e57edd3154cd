"""N_pre for the control experiment: a classifier trained on labels with symmetric noise at rate p.

ClusterFit's claim is about what N_pre's features keep once the network has fitted a noisy proxy
task, so N_pre trains without augmentation, for long enough to fit the noisy labels (its train
accuracy on them is in the ``FitResult`` history).
"""
from __future__ import annotations

from typing import Optional

from torch import nn

from addernet.data import make_loaders
from addernet.train import fit


def train_pre(model: nn.Module, data, *, root=None, noise: float = 0.0, noise_seed: int = 0, epochs: int = 30,
              batch_size: int = 128, lr: float = 0.1, weight_decay: float = 5e-4, augment: bool = False,
              device=None, seed: int = 0, out: Optional[str] = None, num_workers: int = 0,
              distributed: bool = False, progress: bool = True, log=print, limit_batches: Optional[int] = None):
    """Train ``model`` on the train split of ``data`` with labels flipped at rate ``noise`` (each
    noisy label drawn uniformly from the other classes, seeded by ``noise_seed``), through
    ``addernet.train.fit``. The test split keeps its true labels, so ``test_acc`` is clean accuracy."""
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"label noise must be in [0, 1), got {noise}")
    loaders = make_loaders(data, root, batch_size, num_workers, seed=seed, distributed=distributed,
                           augment=augment, label_noise=noise, noise_seed=noise_seed)
    return fit(model, loaders, epochs=epochs, out=out, device=device, seed=seed, lr=lr, weight_decay=weight_decay,
               progress=progress, log=log, distributed=distributed, limit_batches=limit_batches)
