"""AdderLinear: a drop-in replacement for nn.Linear computing -sum_i |x_i - W[o, i]| per output."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import adder_linear
from .grad_scale import adaptive_scale


class AdderLinear(nn.Module):
    """Adder fully-connected layer with nn.Linear's signature, state_dict and repr, plus ``eta``.

    Y[..., o] = -sum_i |X[..., i] - W[o, i]| + bias[o]: an adder convolution with a 1x1 kernel on a
    1x1 image, with the same gradients (full-precision weight gradient, HardTanh input gradient),
    the same adaptive learning-rate scaling (``eta``; None for the raw gradient) and the same
    initialisation (weights ~ N(0, 1), bias 0) as ``AdderConv2d``. Not a subclass of ``nn.Linear``,
    so that code that re-initialises or counts every ``nn.Linear`` does not mistake it for one.
    ``backend`` pins this layer to one backend; by default the global choice applies.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None,
                 eta: float | None = 0.2, backend: str | None = None) -> None:
        super().__init__()
        if eta is not None and eta <= 0:
            raise ValueError(f"eta must be positive or None, got {eta}")
        factory = dict(device=device, dtype=dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        self.eta = eta
        self.backend = backend
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        return s + (f", eta={self.eta}" if self.eta != 0.2 else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.eta is None else adaptive_scale(self.weight, self.eta)
        return adder_linear(input, weight, self.bias, backend=self.backend)


