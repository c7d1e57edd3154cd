"""Input gradients J(x) and their squared distance L_diff.

J(x) is the gradient, with respect to the pixel-space input x in [0, 1], of the true class's softmax
probability (``target="prob"``, the official code's choice) or of the per-sample cross-entropy
(``target="loss"``, the paper's text). Teacher and student must use the same definition.

Each sample's J is its own gradient: the objective summed over the batch is differentiated, so a
sample's J does not shrink with the batch size (in train mode BatchNorm still couples the samples a
little, as it does in the official code).

Rescaling gamma. The official code takes J with respect to 0-255 pixels and sums L_diff over batch
and pixels. With pixels in [0, s] a gradient is J_1 / s, so L_diff shrinks by s**2; a mean divides
the sum by N*P (batch times C*H*W) and "batchmean" by N. To keep gamma * L_diff the same,
``rescale_gamma`` multiplies gamma by

    (to_scale**2 * r(to_reduction)) / (from_scale**2 * r(from_reduction)),   r(sum)=1, r(batchmean)=N, r(mean)=N*P

e.g. the official CIFAR gamma=10 (255, sum) at batch 32 and P=3*32*32 is 10 * 32 * 3072 / 255**2 = 15.1 for
[0, 1] inputs with a mean.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = ("prob", "loss")
REDUCTIONS = ("sum", "mean", "batchmean")


def _check(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def input_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, target: str = "prob",
                   create_graph: bool = False, adapter: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                   return_logits: bool = False):
    """J(x): d target / d x for every sample of ``x`` (N, C, H, W), same shape as ``x``.

    ``adapter`` maps x to the model's input size (see ``adapters``); J is still taken with respect
    to ``x``, the student-size image. ``create_graph=True`` keeps the graph so that a loss on J
    trains the model (double backprop); otherwise J comes back detached. ``return_logits`` also
    returns the logits of this forward pass (the student's CE can reuse them).
    """
    _check("target", target, TARGETS)
    if x.dim() != 4:
        raise ValueError(f"input_gradient expects images (N, C, H, W), got shape {tuple(x.shape)}")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be (N,) with N={x.shape[0]}, got shape {tuple(y.shape)}")
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(adapter(x) if adapter is not None else x)
        if logits.dim() != 2:
            raise ValueError(f"the model must return logits (N, classes), got shape {tuple(logits.shape)}")
        if target == "prob":
            objective = logits.float().softmax(1).gather(1, y[:, None]).sum()
        else:
            objective = F.cross_entropy(logits.float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(objective, x, create_graph=create_graph)
    if not create_graph:
        grad = grad.detach()
        logits = logits.detach()
    return (grad, logits) if return_logits else grad


def l_diff(student_grad: torch.Tensor, teacher_grad: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """||J_s - J_t||^2: "sum" over batch and pixels (the official code), "mean" over both, or
    "batchmean" (sum over pixels, mean over the batch). The teacher's J is treated as a constant."""
    _check("reduction", reduction, REDUCTIONS)
    if student_grad.shape != teacher_grad.shape:
        raise ValueError(f"student and teacher gradients differ in shape: {tuple(student_grad.shape)} vs "
                         f"{tuple(teacher_grad.shape)}; give the teacher an input adapter")
    sq = (student_grad - teacher_grad.detach()).pow(2)
    if reduction == "sum":
        return sq.sum()
    if reduction == "mean":
        return sq.mean()
    return sq.sum() / max(sq.shape[0], 1)


def _reduction_factor(reduction: str, batch_size: int, num_pixels: int) -> float:
    _check("reduction", reduction, REDUCTIONS)
    return {"sum": 1.0, "batchmean": float(batch_size), "mean": float(batch_size * num_pixels)}[reduction]


def rescale_gamma(gamma: float, *, batch_size: int, num_pixels: int, from_scale: float = 255.0,
                  from_reduction: str = "sum", to_scale: float = 1.0, to_reduction: str = "mean") -> float:
    """The gamma that gives the same gamma * L_diff after changing pixel scale and reduction (see the
    module's docstring). ``num_pixels`` = C*H*W of one image; ``batch_size`` = N."""
    if batch_size < 1 or num_pixels < 1 or from_scale <= 0 or to_scale <= 0:
        raise ValueError("batch_size, num_pixels and the pixel scales must be positive")
    ratio = (to_scale ** 2 * _reduction_factor(to_reduction, batch_size, num_pixels)) / (
        from_scale ** 2 * _reduction_factor(from_reduction, batch_size, num_pixels))
    return float(gamma) * ratio
