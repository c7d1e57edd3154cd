"""AdderNet's adaptive learning-rate scaling, applied to a weight's gradient.

The official code rescales the weight gradient inside backward, over the whole layer:
g <- g * eta * sqrt(numel(W)) / max(||g||_2, 1e-12). Momentum and weight decay then act on the
scaled gradient. Doing it in an identity autograd.Function keeps the op's own gradient raw.
"""
from __future__ import annotations

import math

import torch


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight, eta):
        ctx.eta = eta
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad):
        norm = torch.linalg.vector_norm(grad).clamp_min(1e-12)
        return grad * (ctx.eta * math.sqrt(grad.numel()) / norm), None


def adaptive_scale(weight: torch.Tensor, eta: float) -> torch.Tensor:
    """Identity in the forward; the backward rescales the gradient as AdderNet's Eq. 13 does."""
    return _ScaleGrad.apply(weight, eta)
