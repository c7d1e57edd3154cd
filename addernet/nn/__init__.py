"""Layers: the adder convolution, the adder linear layer and their gradient scaling."""
from .adder_conv import AdderConv2d
from .adder_linear import AdderLinear
from .grad_scale import adaptive_scale

__all__ = ["AdderConv2d", "AdderLinear", "adaptive_scale"]
