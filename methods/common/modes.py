"""Running a model in eval mode for a while, and giving every submodule its own mode back."""
from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(model):
    """Eval mode for the duration; every submodule gets its own mode back (a frozen BN stays frozen).

    model: an nn.Module, a bound method of one (model.forward_features), or any other callable (no-op)."""
    owner = model if isinstance(model, torch.nn.Module) else getattr(model, "__self__", None)
    modes = [(m, m.training) for m in owner.modules()] if isinstance(owner, torch.nn.Module) else []
    for m, _ in modes:
        m.training = False
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode
