"""Integer inference for AdderNets: uint8 adder layers, and post-training quantisation of a model.

    qmodel = addernet.quantize(model, calib_loader)        # the whole graph in 8-bit integers (PT2E)
    qmodel = addernet.quant.compile_frozen(qmodel, images)  # torch's int8 kernels around the adder ones
"""
from .._deprecated import moved_to
from ..functional_u8 import adder_conv2d_u8, dequantize_tensor, quantize_tensor, shared_qparams
from .pt2e import AdderX86InductorQuantizer, compile_frozen, quantize_pt2e
from .quantize import quantize

# The layer moved to addernet.nn (addernet.QuantAdderConv2d is unchanged); quant.layer and
# quant.functional are old module names (addernet/_deprecated.py).
__getattr__ = moved_to("addernet.nn", __name__, ("QuantAdderConv2d",))

__all__ = ["AdderX86InductorQuantizer", "adder_conv2d_u8", "compile_frozen", "dequantize_tensor",
           "quantize", "quantize_pt2e", "quantize_tensor", "shared_qparams"]
