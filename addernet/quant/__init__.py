"""Integer inference for AdderNets: uint8 adder layers, and post-training quantisation of a model.

    qmodel = addernet.quantize(model, calib_loader)      # adder layers in 8-bit integers
"""
from .functional import adder_conv2d_u8, dequantize_tensor, quantize_tensor, shared_qparams
from .layer import QuantAdderConv2d
from .quantize import quantize

__all__ = ["QuantAdderConv2d", "adder_conv2d_u8", "dequantize_tensor", "quantize", "quantize_tensor",
           "shared_qparams"]
