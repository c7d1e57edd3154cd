"""The calibration batches both quantisation flows read (``quantize.py``'s adder-only mode and
``pt2e.py``'s whole graph): the inputs of a loader's first batches, each refused before any work if
it has no images or a NaN/inf. In a module of its own so that neither flow imports the other."""
from __future__ import annotations

import torch

from ..functional_u8 import check_finite


def inputs(batch):
    return batch[0] if isinstance(batch, (list, tuple)) and len(batch) else batch


def calibration_batches(loader, batches: int, progress: bool):
    """The first ``batches`` inputs of ``loader``, each checked (``checked``); none is an error."""
    from tqdm import tqdm

    seen = 0
    for batch in tqdm(loader, total=batches, desc="calibrate", disable=not progress, leave=False):
        if seen >= batches:
            break
        yield checked(inputs(batch), seen)
        seen += 1
    if seen == 0:
        raise ValueError("quantize(): calib_loader gave no batches to calibrate on")


def checked(x: torch.Tensor, i: int) -> torch.Tensor:
    """A calibration batch, refused before any work if it has no images or a NaN/inf in them."""
    if isinstance(x, (list, tuple)) and not len(x):
        raise ValueError(f"quantize(): calibration batch {i} has no images (an empty {type(x).__name__})")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"quantize(): calibration batch {i} is a {type(x).__name__}, not a tensor of images")
    if x.dim() == 0 or x.shape[0] == 0 or x.numel() == 0:
        raise ValueError(f"quantize(): calibration batch {i} has no images (shape {tuple(x.shape)})")
    check_finite(x, f"quantize(): calibration batch {i}")
    return x
