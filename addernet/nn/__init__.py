"""Layers: the adder convolution and its gradient scaling."""
from .adder_conv import AdderConv2d
from .grad_scale import adaptive_scale

__all__ = ["AdderConv2d", "adaptive_scale"]
