"""The input-size check the fixed-size models run first in ``forward``.

A fixed-size model given another size does not always fail: LeNet-5-BN at 32x32 returns 40 logits
per image (a 2x2 map of 10 classes flattened). So those models check the size before any layer.
The check is a plain Python shape comparison, which torch.compile(fullgraph=True) resolves at
trace time, and ``torch.fx.wrap`` keeps it opaque to symbolic tracing (so ``addernet.fuse`` can
still trace the models with torch.fx). fx patches the name in this module's globals, so callers
must look it up here, as ``_input.check_input_size``, not import the function itself.
"""
from __future__ import annotations

import torch
import torch.fx


@torch.fx.wrap
def check_input_size(x: torch.Tensor, size: tuple[int, int], model: str) -> torch.Tensor:
    """Raises ValueError unless ``x`` is a batch (N, C, H, W) with (H, W) == ``size``; returns ``x``."""
    if x.dim() != 4 or tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(f"{model} expects {size[0]}x{size[1]} images, a batch of shape "
                         f"(N, C, {size[0]}, {size[1]}); got shape {tuple(x.shape)}")
    return x
