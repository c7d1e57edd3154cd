"""Arithmetic per image, by a forward-hook count over the weight layers only.

Deliberately small (a fuller counter comes with the benchmarks). The rules:

- nn.Conv2d / nn.Linear: taps = output elements * (in_channels / groups) * kh * kw (Linear: *
  in_features). Each tap is a multiply-accumulate, counted as 1 multiplication + 1 addition.
- AdderConv2d: the same number of taps, each |x - w| accumulated: 2 additions (the subtraction and
  the accumulation) + 1 absolute value, 0 multiplications.
- A bias adds one addition per output element.
- BatchNorm, activations, pooling and the loss are not counted: they are the same in both kinds
  and small next to the weight layers (BN folds into the neighbouring layer at inference).
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import AdderConv2d


def _taps(m: nn.Module, out: torch.Tensor) -> int:
    per_sample = out[0].numel()
    if isinstance(m, nn.Linear):
        return per_sample * m.in_features
    kh, kw = m.kernel_size
    return per_sample * (m.in_channels // m.groups) * kh * kw


def count_ops(model: nn.Module, input_shape) -> dict:
    """{'mults', 'adds', 'abs'} for one image of ``input_shape`` (C, H, W; a leading batch size is
    allowed and ignored). Runs one forward pass on zeros, in eval mode, without gradients."""
    shape = tuple(input_shape)
    if len(shape) == 4:
        shape = shape[1:]
    counts = {"mults": 0, "adds": 0, "abs": 0}

    def hook(m, _inp, out):
        taps = _taps(m, out)
        bias = out[0].numel() if getattr(m, "bias", None) is not None else 0
        if isinstance(m, AdderConv2d):
            counts["adds"] += 2 * taps + bias
            counts["abs"] += taps
        else:
            counts["mults"] += taps
            counts["adds"] += taps + bias

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, AdderConv2d))]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    p = next(model.parameters(), None)
    x = torch.zeros((1, *shape), device=p.device if p is not None else None,
                    dtype=p.dtype if p is not None and p.is_floating_point() else None)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counts
