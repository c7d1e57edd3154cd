"""The training model factory: ``build_model`` makes any ``addernet.models`` name (``tinynet``
included: it is registered there, in the one registry, ``addernet.models.MODELS``)."""
from __future__ import annotations

import warnings

from ..models import MODELS, TinyNet, get_model


# The training API's name for addernet.models.get_model: any name of the one registry, tinynet
# included; kwargs: num_classes, kind, in_channels, eta.
build_model = get_model


def model_names() -> list[str]:
    return sorted(MODELS)


def __getattr__(name: str):
    # TRAIN_MODELS held tinynet beside models.MODELS; there is one registry now. It stays one release.
    if name == "TRAIN_MODELS":
        warnings.warn("addernet.train.model_factory.TRAIN_MODELS is deprecated: addernet.models.MODELS registers "
                      "tinynet with the paper's models", DeprecationWarning, stacklevel=2)
        return {"tinynet": TinyNet}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TinyNet", "build_model", "model_names"]
