"""The seam of the training loop: a step turns (model, batch) into a loss and metrics.

``train_one_epoch`` and ``evaluate`` call ``step(model, batch)`` once per batch, inside
``mixed_precision``. A step that returns a loss leaves the update to the loop (zero_grad, backward,
optimizer.step, scheduler). A step that updates by itself (several optimisers, a discriminator)
returns ``loss=None``. Metrics are means over the batch; the loop averages them over the epoch,
weighted by the batch size, and over the DDP ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

Metric = Union[float, torch.Tensor]


@dataclass
class StepOutput:
    """What one step gives the loop.

    ``loss``: the scalar to backpropagate, or None when the step made its own update(s).
    ``metrics``: per-batch means (floats or 0-d tensors; tensors are not synced each step).
    ``batch_size``: the weight of these metrics in the epoch's average; None means ``len(batch[0])``.
    """

    loss: Optional[torch.Tensor]
    metrics: dict[str, Metric] = field(default_factory=dict)
    batch_size: Optional[int] = None


def _hard_targets(logits: torch.Tensor, y: torch.Tensor) -> bool:
    return logits.dim() == 2 and y.dim() == 1 and not torch.is_floating_point(y)


def classification_step(model: nn.Module, batch) -> StepOutput:
    """Cross-entropy on ``batch = (x, y)``; metrics ``loss`` and, for integer class targets, ``acc``
    (top-1 hits as a fraction). ``y`` may also hold class probabilities (N, C): soft cross-entropy,
    no accuracy. The loss is taken in float32 even under autocast."""
    x, y = batch[0], batch[1]
    logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    metrics: dict[str, Metric] = {"loss": loss.detach()}
    if _hard_targets(logits, y):
        metrics["acc"] = (logits.detach().argmax(1) == y).float().mean()
    return StepOutput(loss, metrics, int(y.shape[0]))


def soft_target_step(model: nn.Module, batch) -> StepOutput:
    """Soft cross-entropy ``-sum_c p_c log softmax(z)_c`` on ``batch = (x, p)`` with ``p`` a (N, C)
    probability tensor (a teacher's output, mixed or smoothed labels). Metrics: ``loss``, and
    ``agree``, the fraction whose top class matches the target's top class."""
    x, p = batch[0], batch[1]
    logits = model(x)
    if not torch.is_floating_point(p) or p.shape != logits.shape:
        raise ValueError(f"soft_target_step needs float targets of the logits' shape {tuple(logits.shape)}, "
                         f"got {p.dtype} {tuple(p.shape)}; use classification_step for class indices")
    loss = -(p.float() * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
    agree = (logits.detach().argmax(1) == p.argmax(1)).float().mean()
    return StepOutput(loss, {"loss": loss.detach(), "agree": agree}, int(p.shape[0]))
