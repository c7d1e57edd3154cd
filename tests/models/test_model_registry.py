"""One model registry: ``addernet.models.MODELS`` names every model the library builds, TinyNet
included (it was in a second registry, ``train.model_factory.TRAIN_MODELS``)."""
import pytest
import torch

from addernet.models import MODELS, TinyNet, get_model, model_spec
from addernet.train import build_model


def test_tinynet_is_in_the_one_registry():
    assert "tinynet" in MODELS and isinstance(get_model("TinyNet", kind="conv"), TinyNet)
    spec = model_spec("tinynet")
    assert spec.input_size == (1, 8, 8) and not spec.fixed_size and not spec.paper
    assert all(model_spec(n).paper for n in MODELS if n != "tinynet")
    net = get_model("tinynet", num_classes=3, in_channels=2).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 2, 5, 7)).shape == (2, 3)  # any size of 2x2 or more


def test_the_training_factory_is_the_registry():
    assert build_model is get_model
    from addernet.train.model_factory import model_names
    assert model_names() == sorted(MODELS)
    import addernet.train.model_factory as mf
    with pytest.warns(DeprecationWarning, match="MODELS registers tinynet"):
        assert mf.TRAIN_MODELS == {"tinynet": TinyNet}


def test_an_unknown_name_lists_the_papers_models_first():
    with pytest.raises(ValueError, match="vgg_small, tinynet$"):
        get_model("resnet99")
