"""addernet.models: features, heads, BatchNorm recalibration and input sizes."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import addernet
import addernet.data as D
from addernet.models import (MODELS, SPECS, feature_extractor, get_model, model_spec, recalibrate_bn,
                             replace_head)
from addernet.models import TinyNet

# Small inputs keep the ImageNet ResNets cheap: they pool adaptively.
FAST = {"resnet18": (3, 32, 32), "resnet50": (3, 32, 32), "tinynet": (1, 8, 8)}
# name -> (feature width, {feature layer: output shape per image})
LAYOUT = {
    "lenet5_bn": (84, {"pool1": (6, 14, 14), "pool2": (16, 5, 5), "relu3": (120, 1, 1)}),
    "resnet20": (64, {"layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}),
    "resnet32": (64, {"layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}),
    "vgg_small": (8192, {"features.6": (128, 16, 16), "features.13": (256, 8, 8)}),
    "resnet18": (512, {"layer1": (64, 8, 8), "layer2": (128, 4, 4), "layer3": (256, 2, 2),
                       "layer4": (512, 1, 1)}),
    "resnet50": (2048, {"layer1": (256, 8, 8), "layer2": (512, 4, 4), "layer3": (1024, 2, 2),
                        "layer4": (2048, 1, 1)}),
    "tinynet": (32, {"features.2": (8, 8, 8), "features.6": (16, 4, 4)}),
}


def build(name, **kw):
    if name == "tinynet":
        return TinyNet(**kw), (1, 8, 8)
    return get_model(name, **kw), FAST.get(name, model_spec(name).input_size)


def randomised(model):
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    return model.eval()


def test_every_model_has_a_layout():
    assert set(LAYOUT) == set(MODELS) == set(SPECS)


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_forward_is_head_of_features_and_layers_are_extractable(name):
    model, chw = build(name, kind="conv", num_classes=5)
    model = randomised(model)
    x = torch.randn(2, *chw)
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model(x)
        assert f.dim() == 2 and f.shape[0] == 2
        torch.testing.assert_close(model.head(f), logits, rtol=0, atol=0)
        assert logits.shape == (2, 5)
        out = feature_extractor(model, model.feature_layers)(x)
    assert list(out) == list(model.feature_layers) and model.feature_layers[-1] == "features"
    torch.testing.assert_close(out["features"], f, rtol=0, atol=0)
    if name in LAYOUT:
        width, shapes = LAYOUT[name]
        assert f.shape == (2, width)
        assert {k: tuple(v.shape[1:]) for k, v in out.items() if k != "features"} == shapes


def test_head_shares_the_models_parameters():
    model = get_model("resnet20", kind="conv")
    head_params = {id(p) for p in model.head.parameters()}
    assert head_params == {id(model.fc.weight), id(model.bn2.weight), id(model.bn2.bias)}
    assert model.head.layers[0] is model.fc
    vgg = get_model("vgg_small", kind="conv")
    assert vgg.head is vgg.classifier


def test_extracted_outputs_are_cloned_before_in_place_relus():
    model = randomised(get_model("lenet5_bn", kind="adder"))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        out = feature_extractor(model, ["bn1", "relu1"])(x)
        ref = model.bn1(model.conv1(x))
    # relu1 runs in place on bn1's output: without the clone, bn1's output would read as relu'd.
    assert (out["bn1"] < 0).any()
    torch.testing.assert_close(out["bn1"], ref)
    torch.testing.assert_close(out["relu1"], ref.clamp_min(0))


def test_extractor_keeps_gradients_and_takes_a_single_name():
    model = get_model("lenet5_bn", kind="adder")
    out = feature_extractor(model, "relu3")(torch.randn(2, 1, 28, 28))
    out["relu3"].sum().backward()
    assert model.conv1.weight.grad is not None


def test_extractor_errors():
    model = get_model("lenet5_bn")
    with pytest.raises(ValueError, match="no module 'nope'.*pool1, pool2, relu3, features"):
        feature_extractor(model, ["nope"])
    with pytest.raises(ValueError, match="'fc3' did not run in forward_features"):
        feature_extractor(model, ["fc3"])(torch.randn(2, 1, 28, 28))
    with pytest.raises(ValueError, match="at least one"):
        feature_extractor(model, [])
    with pytest.raises(TypeError, match="forward_features"):
        feature_extractor(nn.Linear(2, 2), ["features"])


def test_a_module_run_twice_has_no_single_output():
    class Shared(TinyNet):
        def forward_features(self, x):
            return self.features[2](self.features[2](x)).mean((2, 3))

    with pytest.raises(ValueError, match="ran 2 times"):
        feature_extractor(Shared(), ["features.2"])(torch.randn(1, 1, 4, 4))


def test_lenet_has_one_pool_per_call_site_and_pool_free_state_dict():
    model = get_model("lenet5_bn")
    assert model.pool1 is not model.pool2
    calls = {}
    for n in ("pool1", "pool2"):
        getattr(model, n).register_forward_hook(lambda m, a, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
    model(torch.randn(2, 1, 28, 28))
    assert calls == {"pool1": 1, "pool2": 1}
    # Pools hold no state, so checkpoints saved with the one shared pool load strictly.
    assert not any("pool" in k for k in model.state_dict())


def test_extractor_unwraps_a_wrapper():
    class Wrapper(nn.Module):  # as DistributedDataParallel keeps its model
        def __init__(self, module):
            super().__init__()
            self.module = module

    model = get_model("resnet20", kind="conv").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(feature_extractor(Wrapper(model), "features")(x)["features"],
                                   model.forward_features(x))


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_replace_head(name):
    model, chw = build(name, kind="conv")
    dtype = torch.float64 if name in ("lenet5_bn", "tinynet") else torch.float32  # big ones: cheap
    model = randomised(model).to(dtype)
    x = torch.randn(2, *chw, dtype=dtype)
    keys = set(model.state_dict())
    with torch.no_grad():
        before = model.forward_features(x)
        assert replace_head(model, 3) is model
        assert model(x).shape == (2, 3) and model(x).dtype == dtype
        torch.testing.assert_close(model.forward_features(x), before, rtol=0, atol=0)
    assert set(model.state_dict()) == keys  # the same names: checkpoints keep their layout
    assert not any(m.training for m in model.modules())  # the new layers follow eval mode
    for m in model.head.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0) and torch.all(m.running_mean == 0)
    with pytest.raises(ValueError, match="positive integer"):
        replace_head(model, 0)


# ----------------------------------------------------------------- BatchNorm recalibration

def test_recalibrate_bn_revives_a_fresh_adder_lenet():
    train, test, _ = D.make_loaders("mnist5k", None, 64)
    torch.manual_seed(0)
    model = get_model("lenet5_bn", kind="adder").eval()
    x, _ = next(iter(test))
    with torch.no_grad():
        before = model(x)
    # Adder outputs are in the hundreds, far below BN's initial mean 0 / var 1: every ReLU is off.
    assert before.std(0).max() < 1e-6
    assert recalibrate_bn(model, train, batches=10) is model
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        after = model(x)
    assert after.std(0).min() > 0.1
    assert model.bn2.running_mean.abs().max() > 10  # statistics now at the adder layer's scale


def test_recalibrate_bn_is_the_average_over_the_first_batches():
    torch.manual_seed(0)
    data = torch.randn(40, 3, 4, 4) * torch.tensor([1.0, 5.0, 20.0]).view(1, 3, 1, 1) + 7
    loader = DataLoader(TensorDataset(data, torch.zeros(40)), batch_size=8)
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Dropout(0.5)).train()
    model[1].eval()
    recalibrate_bn(model, loader, batches=3)
    used = data[:24]
    torch.testing.assert_close(model[0].running_mean, used.mean((0, 2, 3)))
    # Each batch's unbiased variance, averaged: what a cumulative moving average gives.
    per_batch = torch.stack([b.var((0, 2, 3), unbiased=True) for b in used.split(8)])
    torch.testing.assert_close(model[0].running_var, per_batch.mean(0))
    assert model[0].momentum == 0.1  # restored
    assert model.training and model[0].training and not model[1].training  # each mode restored


def test_recalibrate_bn_measures_a_centred_adder_under_the_offset_it_evaluates_with():
    # The centred layer's input_mean would move 10% a batch in the pass's train mode, so each
    # batch would see another offset and the averaged running mean would miss the final one
    # (by 2.2 here before the fix).
    torch.manual_seed(0)
    data = torch.rand(24, 2, 5, 5) * 3 + 1  # input means far from the layer's input_mean (0.5)
    loader = DataLoader(TensorDataset(data, torch.zeros(24)), batch_size=8)
    adder = addernet.AdderConv2d(2, 3, 3, bn_centered=True)
    adder.input_mean.fill_(0.5)
    model = nn.Sequential(adder, nn.BatchNorm2d(3)).eval()
    recalibrate_bn(model, loader, batches=None)
    assert torch.equal(adder.input_mean, torch.full((2,), 0.5))  # held, not moved by the pass
    assert not adder.input_mean_held and not model.training  # restored
    with torch.no_grad():  # eval mode: the raw op plus the offset the model now evaluates with
        pre_bn = adder(data)
    torch.testing.assert_close(model[1].running_mean, pre_bn.mean((0, 2, 3)), rtol=1e-5, atol=1e-4)


def test_recalibrate_bn_errors_leave_statistics_alone():
    model = nn.Sequential(nn.BatchNorm2d(1))
    model[0].running_mean.fill_(3.0)
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_bn(model, [], batches=5)
    assert model[0].running_mean.item() == 3.0
    with pytest.raises(ValueError, match="positive integer"):
        recalibrate_bn(model, [torch.zeros(2, 1, 1, 1)], batches=0)
    with pytest.raises(TypeError, match="a batch must be"):
        recalibrate_bn(model, ["text"])


# ----------------------------------------------------------------- input sizes

@pytest.mark.parametrize("name", sorted(SPECS))
def test_model_spec_fits_the_model(name):
    spec = model_spec(name)
    model = get_model(name, kind="conv").eval()
    chw = spec.input_size if spec.fixed_size else FAST[name]
    with torch.no_grad():
        assert model(torch.randn(1, *chw)).shape == (1, spec.num_classes)
    assert model_spec(name.upper().replace("_", "-")) == spec
    with pytest.raises(ValueError, match="unknown model"):
        model_spec("resnet99")


@pytest.mark.parametrize("name, bad", [("lenet5_bn", 32), ("resnet20", 33), ("resnet32", 28), ("vgg_small", 28)])
def test_wrong_input_size_is_a_clear_error(name, bad):
    # lenet5_bn at 32x32 used to return 40 logits per image; resnet20 at 33x33 pooled to 1x1 silently.
    spec = model_spec(name)
    h, w = spec.input_size[1:]
    with pytest.raises(ValueError, match=f"{name} expects {h}x{w} images"):
        get_model(name)(torch.randn(1, spec.input_size[0], bad, bad))
    with pytest.raises(ValueError, match=f"expects {h}x{w}"):
        get_model(name)(torch.randn(spec.input_size[0], h, w))  # an image, not a batch


@pytest.mark.parametrize("kind", ["conv", "adder"])
def test_the_input_check_compiles_without_graph_breaks(kind):
    model = get_model("lenet5_bn", kind=kind).eval()
    x = torch.randn(2, 1, 28, 28)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
        with pytest.raises(ValueError, match="28x28"):  # without fullgraph the check's error is raised as is
            torch.compile(model, backend="eager")(torch.randn(2, 1, 32, 32))


def test_stop_ends_the_forward_at_the_last_wanted_module():
    # methods.common.extract_features(layer=...) relies on it: an early layer costs only its prefix.
    class Boom(nn.Module):
        def forward(self, x):
            raise AssertionError("the forward should have stopped before this module")

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), Boom())  # no forward_features
    x = torch.randn(2, 1, 5, 5)
    out = feature_extractor(model, ["0", "1"], stop=True)(x)
    with torch.no_grad():
        ref = model[0](x)
    torch.testing.assert_close(out["0"], ref)  # cloned before the in-place ReLU overwrote it
    torch.testing.assert_close(out["1"], ref.clamp(min=0))
    with pytest.raises(AssertionError, match="stopped before"):
        feature_extractor(model, ["0"])(x)  # without stop the whole forward runs


def test_stop_takes_a_shared_modules_first_call():
    class Shared(TinyNet):
        def forward_features(self, x):
            return self.features[2](self.features[2](x) - 1).mean((2, 3))

    x = torch.randn(1, 1, 4, 4)
    out = feature_extractor(Shared(), ["features.2"], stop=True)(x.clone())  # its ReLU is in place
    torch.testing.assert_close(out["features.2"], torch.relu(x))


def test_a_module_that_returns_no_tensor_is_named():
    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    model = nn.Sequential(Pair())
    with pytest.raises(TypeError, match="module '0' returned tuple, not a tensor"):
        feature_extractor(model, ["0"])(torch.randn(1, 2))
