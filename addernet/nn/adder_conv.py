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
    the weight gradient; ``eta=None`` leaves the raw full-precision gradient. Under SGD the adder
    weights then move by about lr * eta per element and step: 0.2 is the paper's choice for lr 0.1
    over hundreds of epochs; a short plain loop at lr 0.05 trained better at ``eta=1.0`` (chosen on
    a validation split, docs/training.md). Adam normalises the gradient, so eta barely acts there.

    It subclasses ``_ConvNd`` rather than ``nn.Conv2d`` on purpose: code that re-initialises every
    ``isinstance(m, nn.Conv2d)`` (kaiming init loops) or counts conv FLOPs must not mistake it for one.

    Initialisation, as the official code: weights ~ N(0, 1), so that filters live on the same
    scale as the BatchNorm-ed activations they are compared with (an L1 distance, unlike a dot
    product, is not invariant to the weight's scale); bias (off in the paper's models) starts at 0.
    ``backend`` pins this layer to one backend; by default the global choice applies.
    ``grad_mode`` is "paper" (HardTanh input gradient, the default) or "exact" (sign gradients of
    the L1 form), as in ``addernet.functional.adder_conv2d``.

    ``bn_centered`` (default False: the layer computes exactly -sum |X - W|) is for a layer whose
    output feeds a BatchNorm and nothing else: it adds the detached per-filter constant
    sum_k |w_k - mu_k| (``centering_offset``; mu: a running mean of the input's channels). The
    output then sits near 0 instead of near -sum_k |w_k|, which moves with every step of training
    faster than BatchNorm's running mean follows; without it the running statistics lag and the
    network is at chance in eval mode until the lr decays to 0 (issue 22, docs/training.md). The
    BatchNorm removes any per-channel constant in train mode and the constant has no gradient, so
    training is unchanged (up to float rounding). ``get_model`` and ``addernet.convert`` set it on
    every adder layer a BatchNorm follows, and give every BatchNorm of the model momentum 0.5
    (``addernet.models.ADDER_BN_MOMENTUM``).

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
        bn_centered: bool = False,
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
        self.register_buffer("input_mean", None)
        self.bn_centered = bn_centered

    # The per-input-channel running mean of the input that ``centering_offset`` uses. Its presence
    # in a state dict is what marks the layer as centred, so a checkpoint says how its BatchNorm
    # statistics were taken and loads as it was saved.
    input_mean: torch.Tensor | None
    # True while recalibrate_bn re-estimates the BatchNorms in train mode: the EMA of input_mean
    # then stands still, so that every batch of the pass sees the offset the model evaluates with
    # (a moving offset would leave the averaged running mean off by its drift over the pass).
    input_mean_held: bool = False

    @property
    def bn_centered(self) -> bool:
        return self.input_mean is not None

    @bn_centered.setter
    def bn_centered(self, on: bool) -> None:
        if not on:
            self.input_mean = None
        elif self.input_mean is None:
            self.input_mean = torch.zeros(self.in_channels, device=self.weight.device, dtype=self.weight.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A state dict saved before centring existed (or uncentred: official checkpoints) holds
        # statistics of the raw outputs; one with ``input_mean`` holds centred ones. Follow it.
        if prefix + "weight" in state_dict:
            self.bn_centered = prefix + "input_mean" in state_dict
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        s += f", eta={self.eta}" if self.eta != 0.2 else ""
        s += f", grad_mode={self.grad_mode!r}" if self.grad_mode != "paper" else ""
        return s + (", bn_centered=True" if self.bn_centered else "")

    def centering_offset(self) -> torch.Tensor | None:
        """The detached per-filter constant sum_k |w_k - mu_k| that ``bn_centered`` adds to the
        output (mu: ``input_mean`` of the input channel w_k sees), or None when not centred.

        An adder output sits near -sum_k E|x_k - w_k| and follows the weights as they move, faster
        than a BatchNorm's running mean can; adding this estimate back keeps what the running mean
        tracks near-stationary. It is exact for a weight below every input value (ReLU outputs and
        w <= 0) and a lower bound otherwise; sum_k |w_k| alone leaves ReLU inputs' mean in the
        residual (docs/training.md measures both). A following BatchNorm subtracts any per-channel
        constant in train mode and the term carries no gradient, so training is unchanged;
        fuse/quantize fold it into their shift.
        """
        if self.input_mean is None:
            return None
        w = self.weight.detach()
        mu = self.input_mean.view(self.groups, 1, -1, 1, 1)  # (groups, 1, C/groups, 1, 1)
        diff = w.view(self.groups, -1, *w.shape[1:]) - mu.to(w.dtype)
        return diff.abs().sum(dim=(2, 3, 4)).reshape(-1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.eta is None else adaptive_scale(self.weight, self.eta)
        padding = self.padding
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        out = adder_conv2d(
            input, weight, self.bias, self.stride, padding, self.dilation, self.groups,
            backend=self.backend, grad_mode=self.grad_mode,
        )
        if self.input_mean is not None and self.training and not self.input_mean_held:  # after the op's input check
            with torch.no_grad():  # an EMA like BatchNorm's (momentum 0.1): inputs are normalised, so it settles
                self.input_mean.lerp_(input.detach().mean(dim=(0, 2, 3)).to(self.input_mean.dtype), 0.1)
        offset = self.centering_offset()
        return out if offset is None else out + offset.view(1, -1, 1, 1).to(out.dtype)
