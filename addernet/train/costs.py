"""Arithmetic per image of the weight layers, for the training summary table.

A thin view of ``addernet.bench.count_ops`` (which also counts BatchNorm, activations and pools):
the paper's table counts only the weight layers. Conv/linear taps are 1 multiplication + 1
addition; adder taps are 2 additions (subtract, accumulate) + 1 absolute value; a bias adds one
addition per output element.
"""
from __future__ import annotations

from torch import nn

from ..bench.counts import count_ops as _count_all


def count_ops(model: nn.Module, input_shape) -> dict:
    """{'mults', 'adds', 'abs'} of the weight layers for one image of ``input_shape`` (C, H, W;
    a leading batch dimension is allowed and replaced by 1). The model is not changed."""
    shape = tuple(input_shape)
    shape = (1, *shape[-3:])
    totals = {"mults": 0, "adds": 0, "abs": 0}
    for layer in _count_all(model, shape).weight_layers():
        for key in totals:
            totals[key] += getattr(layer, key)
    return totals
