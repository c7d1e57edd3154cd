"""Layers: the adder convolution, the adder linear layer, their gradient scaling, and the adder
convolution's inference variants: with BatchNorm (and ReLU) folded in (``addernet.fuse`` puts it in place), and
its uint8 form (``addernet.quantize`` puts it in place)."""
from .adder_conv import AdderConv2d
from .adder_linear import AdderLinear
from .fused import FusedAdderConv2d
from .grad_scale import adaptive_scale
from .quant_adder_conv import QuantAdderConv2d

__all__ = ["AdderConv2d", "AdderLinear", "FusedAdderConv2d", "QuantAdderConv2d", "adaptive_scale"]
