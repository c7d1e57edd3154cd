"""torch-addernet: multiplication-free adder convolutions (AdderNet, CVPR 2020) for PyTorch.

    import addernet
    layer = addernet.AdderConv2d(16, 32, 3, padding=1)   # in place of nn.Conv2d
    model = addernet.convert(torchvision_style_resnet)   # or convert a whole model
"""
from ._version import __version__
from . import _deprecated
from . import backends  # noqa: F401  (loads the backends that register ops with torch: the native build)
from . import functional, models
from .convert import convert, count_layers
from .fuse import fuse
from .nn import AdderConv2d, QuantAdderConv2d
from .quant import quantize

_deprecated.install()  # addernet.ops, addernet.cli_checks and the other moved modules still import, with a warning
__getattr__ = _deprecated.moved_submodules(__name__)  # and addernet.ops and co. as attributes, without an import

__all__ = ["AdderConv2d", "QuantAdderConv2d", "quantize", "backends", "convert", "count_layers", "functional", "fuse", "models", "__version__"]
