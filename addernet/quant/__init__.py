"""Integer inference for AdderNets: uint8 adder layers, and post-training quantisation of a model.

    qmodel = addernet.quantize(model, calib_loader)        # the whole graph in 8-bit integers (PT2E)
    qmodel = addernet.quant.compile_frozen(qmodel, images)  # torch's int8 kernels around the adder ones
"""
from .functional import adder_conv2d_u8, dequantize_tensor, quantize_tensor, shared_qparams
from .layer import QuantAdderConv2d
from .pt2e import AdderX86InductorQuantizer, compile_frozen, quantize_pt2e
from .quantize import quantize

__all__ = ["AdderX86InductorQuantizer", "QuantAdderConv2d", "adder_conv2d_u8", "compile_frozen", "dequantize_tensor",
           "quantize", "quantize_pt2e", "quantize_tensor", "shared_qparams"]
