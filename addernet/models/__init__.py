"""The AdderNet paper's architectures, each in an adder kind and its CNN twin (kind='conv'), and
TinyNet (no paper: smoke tests and the 8x8 digits set). ``MODELS`` is the one registry of them.

    from addernet.models import get_model
    net = get_model("resnet20", num_classes=10, kind="adder")

Every builder takes ``num_classes``, ``kind`` ('adder' or 'conv'), ``in_channels`` and ``eta``.
Both kinds have the same layout and parameter shapes; only the convertible convolutions differ.
``model_spec(name)`` gives a model's input size and class count; a fixed-size model given another
size raises ValueError.

Every model has ``forward_features(x)`` (the flat features), ``head`` (features -> logits) and
``feature_layers``; ``feature_extractor`` takes intermediate outputs, ``replace_head`` gives a new
head, ``recalibrate_bn`` re-estimates BatchNorm statistics. An adder model's BatchNorms run at
momentum ``ADDER_BN_MOMENTUM`` (0.5; ``get_model(..., bn_momentum=...)``, ``set_bn_momentum``).
``load_official`` reads checkpoints saved by the official AdderNet code.
"""
from ._head import FeatureClassifier
from ._kind import KINDS
from .batchnorm import ADDER_BN_MOMENTUM, recalibrate_bn, set_bn_momentum
from .features import FeatureExtractor, feature_extractor, replace_head
from .official import load_official
from .registry import MODELS, SPECS, ModelSpec, get_model, model_spec
from .resnet_cifar import resnet20, resnet32
from .resnet_imagenet import resnet18, resnet50
from .small import lenet5_bn, vgg_small
from .tiny import TinyNet, tinynet

__all__ = ["MODELS", "KINDS", "SPECS", "ModelSpec", "get_model", "model_spec", "load_official",
           "FeatureClassifier", "FeatureExtractor", "feature_extractor", "replace_head", "recalibrate_bn",
           "ADDER_BN_MOMENTUM", "set_bn_momentum",
           "lenet5_bn", "resnet20", "resnet32", "resnet18", "resnet50", "vgg_small", "TinyNet", "tinynet"]
