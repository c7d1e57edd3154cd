"""The BoWNet training step: the frozen teacher's bag of words of x is the target for the student's
prediction from a perturbed g(x), with soft cross-entropy."""
from __future__ import annotations

import torch

from addernet.train import StepOutput, soft_target_step

from .vocabulary import BoWTeacher


class BoWStep:
    """An ``addernet.train`` step. ``teacher`` maps clean images to targets (N, K); ``perturb``
    (a ``Perturbation``) makes g(x) in training; evaluation predicts from the clean images.

    Loss: ``soft_target_step``'s soft cross-entropy -sum_k y_k log softmax(logits)_k, averaged over
    the batch (OBoW's KL 'batchmean' plus the targets' entropy, a constant). Metrics: 'loss',
    'agree' (the student's top word is the target's top word) and 'target_entropy' (nats): the
    loss can fall to that entropy, no lower."""

    def __init__(self, teacher: BoWTeacher, perturb=None, seed: int = 0):
        self.teacher, self.perturb = teacher, perturb
        self.generator = torch.Generator().manual_seed(seed)   # CPU: serves GPU batches too

    def __call__(self, model, batch) -> StepOutput:
        x = batch[0]
        self.teacher.to(x.device)
        target = self.teacher(x).float()
        if self.perturb is not None and model.training:
            x = self.perturb(x, self.generator)
        out = soft_target_step(model, (x, target))
        out.metrics["target_entropy"] = -(target * target.clamp_min(1e-12).log()).sum(1).mean()
        return out
