"""The official IGAM training schedule, scaled to a run of any length.

The official CIFAR-10 -> CIFAR-100 run (``run_IGAM_c10toc100.sh`` in alvinchangw/IGAM_CVPR2020)
trains 320k steps at batch 32 with a piecewise-constant learning rate 0.1 -> 0.01 at step 160k
-> 0.001 at 240k, and switches IGAM on at step 280k (``--steps_before_adv_opt``): plain CE (with
weight decay) for the first 7/8 of training, CE - beta CE_D + gamma L_diff for the last 1/8, all of
it at the lowest learning rate. The discriminator trains only in that last 1/8 (``train_igam.py``
steps D inside the ``ii >= steps_before_adv_opt`` branch), with the same momentum optimiser and lr
schedule as the student. Here those fractions are kept: the lr drops x0.1 at 1/2 and 3/4 of the
steps, and IGAM is on for the last 1/8 of the epochs.
"""
from __future__ import annotations

import torch

LR_DROPS = ((0.5, 0.1), (0.75, 0.01))   # (fraction of the steps, lr factor from there on)
IGAM_FRACTION = 1 / 8                    # (320k - 280k) / 320k


class OfficialFactor:
    """lr factor at step t of ``total``: 1, then 0.1 from t >= total/2, 0.01 from t >= 3 total/4.

    A class, not a lambda, so that LambdaLR's state_dict stores ``total`` and checkpoints resume."""

    def __init__(self, total: int):
        if int(total) < 1:
            raise ValueError(f"the schedule needs at least one step, got total={total}")
        self.total = int(total)

    def __call__(self, t: int) -> float:
        factor = 1.0
        for fraction, f in LR_DROPS:
            if t >= fraction * self.total:
                factor = f
        return factor


def official_lr_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR with ``OfficialFactor`` (``addernet.train`` steps it after every batch)."""
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, OfficialFactor(total_steps))
    sched.per_step = True
    return sched


def official_warmup_epochs(epochs: int) -> int:
    """Plain-CE epochs before IGAM switches on: all but the last 1/8 (at least one IGAM epoch)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    return epochs - max(1, round(epochs * IGAM_FRACTION))
