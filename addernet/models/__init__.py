"""The AdderNet paper's architectures, each in an adder kind and its CNN twin (kind='conv').

    from addernet.models import get_model
    net = get_model("resnet20", num_classes=10, kind="adder")

Every builder takes ``num_classes``, ``kind`` ('adder' or 'conv'), ``in_channels`` and ``eta``.
Both kinds have the same layout and parameter shapes; only the convertible convolutions differ.
``load_official`` reads checkpoints saved by the official AdderNet code.
"""
from ._kind import KINDS
from .official import load_official
from .registry import MODELS, get_model
from .resnet_cifar import resnet20, resnet32
from .resnet_imagenet import resnet18, resnet50
from .small import lenet5_bn, vgg_small

__all__ = ["MODELS", "KINDS", "get_model", "load_official",
           "lenet5_bn", "resnet20", "resnet32", "resnet18", "resnet50", "vgg_small"]
