"""Layers: the adder convolution, its gradient scaling, and its inference variant with BatchNorm
(and ReLU) folded in (``addernet.fuse`` puts it in place)."""
from .adder_conv import AdderConv2d
from .fused import FusedAdderConv2d
from .grad_scale import adaptive_scale

__all__ = ["AdderConv2d", "FusedAdderConv2d", "adaptive_scale"]
