"""The BoWNet training step: the frozen teacher's bag of words of x is the target for the student's
prediction from a perturbed g(x), with soft cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from addernet.train import StepOutput

from .vocabulary import BoWTeacher


class BoWStep:
    """An ``addernet.train`` step. ``teacher`` maps clean images to targets (N, K); ``perturb``
    (a ``Perturbation``) makes g(x) in training; evaluation predicts from the clean images.

    Loss: soft cross-entropy -sum_k y_k log softmax(logits)_k, averaged over the batch (OBoW's
    KL 'batchmean' up to the targets' entropy, a constant). Metrics besides the loss: 'word_acc',
    how often the student's top word is the target's top word, and 'target_entropy' (nats)."""

    def __init__(self, teacher: BoWTeacher, perturb=None, seed: int = 0):
        self.teacher, self.perturb = teacher, perturb
        self.generator = torch.Generator().manual_seed(seed)   # CPU: serves GPU batches too

    def __call__(self, model, batch) -> StepOutput:
        x = batch[0]
        self.teacher.to(x.device)
        target = self.teacher(x).float()
        if self.perturb is not None and model.training:
            x = self.perturb(x, self.generator)
        logits = model(x).float()
        loss = -(target * F.log_softmax(logits, dim=1)).sum(1).mean()
        with torch.no_grad():
            ent = -(target * target.clamp_min(1e-12).log()).sum(1).mean()
            word_acc = (logits.argmax(1) == target.argmax(1)).float().mean()
        return StepOutput(loss, {"loss": loss.detach(), "word_acc": word_acc, "target_entropy": ent},
                          batch_size=x.shape[0])
