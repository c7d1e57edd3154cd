"""AdderConv2d: a drop-in replacement for nn.Conv2d computing -sum |X - W| over each patch."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.utils import _pair

from ..backends import grad2
from ..functional import adder_conv2d
from .grad_scale import adaptive_scale


class AdderConv2d(_ConvNd):
    """Adder convolution with nn.Conv2d's signature, state_dict and repr, plus ``eta``.

    ``eta`` (default 0.2, the official value) turns on the paper's adaptive learning-rate scaling of
    the weight gradient; ``eta=None`` leaves the raw full-precision gradient.

    It subclasses ``_ConvNd`` rather than ``nn.Conv2d`` on purpose: code that re-initialises every
    ``isinstance(m, nn.Conv2d)`` (kaiming init loops) or counts conv FLOPs must not mistake it for one.

    Initialisation, as the official code: weights ~ N(0, 1), so that filters live on the same
    scale as the BatchNorm-ed activations they are compared with (an L1 distance, unlike a dot
    product, is not invariant to the weight's scale); bias (off in the paper's models) starts at 0.
    ``backend`` pins this layer to one backend; by default the global choice applies.
    ``grad_mode`` is "paper" (HardTanh input gradient, the default) or "exact" (sign gradients of
    the L1 form), as in ``addernet.functional.adder_conv2d``.

    Double backprop (a loss on an input gradient taken with ``create_graph=True``, as in IGAM or a
    gradient penalty): the weight passes through ``adaptive_scale``, an identity whose backward
    rescales what reaches it. The input gradient never goes through it (the weight is not on the
    path to the input), and in the final backward every path to the weight, first and second order,
    accumulates at that identity before its backward runs once: the scaling acts once, on the
    weight's final accumulated gradient, W.grad = eta*sqrt(numel(W))*g/||g|| with g the raw total
    (the gradient ``eta=None`` gives).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        eta: float | None = 0.2,
        backend: str | None = None,
        grad_mode: str = "paper",
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            _pair(kernel_size),
            _pair(stride),
            padding if isinstance(padding, str) else _pair(padding),
            _pair(dilation),
            False,
            _pair(0),
            groups,
            bias,
            padding_mode,
            device=device,
            dtype=dtype,
        )
        if eta is not None and eta <= 0:
            raise ValueError(f"eta must be positive or None, got {eta}")
        self.eta = eta
        self.backend = backend
        self.grad_mode = grad2.check_grad_mode(grad_mode)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", eta={self.eta}" if self.eta != 0.2 else ""
        return s + (f", grad_mode={self.grad_mode!r}" if self.grad_mode != "paper" else "")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.eta is None else adaptive_scale(self.weight, self.eta)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return adder_conv2d(
            input, weight, self.bias, self.stride, padding, self.dilation, self.groups,
            backend=self.backend, grad_mode=self.grad_mode,
        )
