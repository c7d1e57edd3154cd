"""FusedAdderConv2d: an adder layer with the eval-mode BatchNorm (and ReLU) after it folded into its
epilogue, as ``addernet.fuse`` leaves it. Inference only."""
from __future__ import annotations

import torch
from torch import nn

from .. import backends
from ..functional import resolve_padding
from .adder_conv import AdderConv2d

__all__ = ["FusedAdderConv2d"]


class FusedAdderConv2d(nn.Module):
    """An AdderConv2d with a following eval-mode BatchNorm (and ReLU) folded into its epilogue.

    Inference only: it always applies the BatchNorm's running statistics, and has no gradient path.
    """

    def __init__(self, adder: AdderConv2d, bn: nn.BatchNorm2d, relu: bool):
        super().__init__()
        for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                     "padding_mode", "backend"):
            setattr(self, attr, getattr(adder, attr))
        self._reversed_padding_repeated_twice = adder._reversed_padding_repeated_twice
        self.relu = relu
        with torch.no_grad():
            inv_std = torch.rsqrt(bn.running_var + bn.eps)
            scale = bn.weight * inv_std if bn.affine else inv_std
            shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
            if adder.bias is not None:
                shift = shift + adder.bias * scale
            offset = adder.centering_offset()  # bn_centered's constant per channel, folded like the bias
            if offset is not None:
                shift = shift + offset * scale
        self.register_buffer("weight", adder.weight.detach().clone())
        self.register_buffer("scale", scale.to(adder.weight.dtype).contiguous())
        self.register_buffer("shift", shift.to(adder.weight.dtype).contiguous())

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bn_folded=True, relu={self.relu}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            x = nn.functional.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        x, pad = resolve_padding(x, self.weight, padding, tuple(self.stride), tuple(self.dilation))
        fused = backends.op("adder_conv2d_fused", self.backend, x.device)
        return fused(x, self.weight, self.scale, self.shift, tuple(self.stride), pad, tuple(self.dilation),
                     self.groups, self.relu)
