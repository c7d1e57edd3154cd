"""Arithmetic per image of the weight layers, for the training summary table.

A view of ``addernet.bench.count_ops`` (which counts every layer, BatchNorm, activations and pools
included, and returns per-layer rows): the paper's table counts only the weight layers. Conv/linear
taps are 1 multiplication + 1 addition; adder taps are 2 additions (subtract, accumulate) + 1
absolute value; a bias adds one addition per output element.
"""
from __future__ import annotations

from torch import nn

from ..bench.counts import count_ops


def weight_layer_ops(model: nn.Module, input_shape) -> dict:
    """{'mults', 'adds', 'abs'} of the weight layers for one image of ``input_shape`` (C, H, W;
    a leading batch dimension is allowed and replaced by 1). The model is not changed."""
    shape = tuple(input_shape)
    shape = (1, *shape[-3:])
    totals = {"mults": 0, "adds": 0, "abs": 0}
    for layer in count_ops(model, shape).weight_layers():
        for key in totals:
            totals[key] += getattr(layer, key)
    return totals
