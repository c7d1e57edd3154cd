"""addernet.models: the paper's architectures in both kinds, and official checkpoint loading."""
import pickle

import pytest
import torch
from torch import nn

from addernet.convert import convert, count_layers
from addernet.models import MODELS, get_model, load_official
from addernet.models.official import OfficialCheckpointError, _rename
from addernet.nn import AdderConv2d

# name -> (input size, in_channels, default classes, adder layers, conv layers, linear layers).
# Adder counts derived by hand from the layouts:
#   lenet5_bn: all five (conv1, conv2, fc1, fc2, fc3), as the paper's MNIST AdderNet.
#   resnet20: 3 stages x 3 blocks x 2 convs = 18, + downsample in layer2 and layer3 = 20.
#   resnet32: 3 x 5 x 2 = 30, + 2 downsample = 32.
#   resnet18: 4 stages x 2 blocks x 2 = 16, + downsample in layer2..4 (layer1 keeps 64 ch, stride 1) = 19.
#   resnet50: (3+4+6+3) blocks x 3 = 48, + downsample in all 4 stages (layer1 goes 64 -> 256) = 52.
#   vgg_small: six 3x3 minus the first = 5.
# Convs kept: the stem, plus the 1x1 classifier for CIFAR resnets (fc); lenet keeps none.
SPECS = {
    "lenet5_bn": (28, 1, 10, 5, 0, 0),
    "resnet20": (32, 3, 10, 20, 2, 0),
    "resnet32": (32, 3, 10, 32, 2, 0),
    "resnet18": (64, 3, 1000, 19, 1, 1),
    "resnet50": (64, 3, 1000, 52, 1, 1),
    "vgg_small": (32, 3, 10, 5, 1, 1),
    "tinynet": (8, 1, 10, 2, 2, 0),
}


def test_registry_lists_every_spec():
    assert set(MODELS) == set(SPECS)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_architecture_both_kinds(name):
    size, cin, classes, n_adder, n_conv, n_linear = SPECS[name]
    adder, conv = get_model(name, kind="adder"), get_model(name, kind="conv")
    c = count_layers(adder)
    assert (c.adder, c.conv, c.linear) == (n_adder, n_conv, n_linear)
    assert count_layers(conv).as_dict() == {"adder": 0, "conv": n_adder + n_conv, "linear": n_linear}
    # The CNN twin: same parameter names and shapes, hence the same counts. The adder kind's state
    # holds one more buffer per adder layer, the input mean of its BatchNorm centring (issue 22).
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items() if not k.endswith(".input_mean")}  # noqa: E731
    assert shapes(adder) == shapes(conv)
    assert sorted(k for k in adder.state_dict() if k.endswith(".input_mean")) == sorted(
        f"{n}.input_mean" for n in c.names["adder"])
    assert sum(p.numel() for p in adder.parameters()) == sum(p.numel() for p in conv.parameters())
    # And convert() on the twin picks exactly the layers the adder kind has (all of LeNet's).
    keep = name != "lenet5_bn"
    assert count_layers(convert(conv, keep_first=keep, keep_last=keep)).names == c.names
    x = torch.randn(2, cin, size, size)
    with torch.no_grad():
        for model in (adder, conv):
            assert model(x).shape == (2, classes)
    for m in adder.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize("name", ["lenet5_bn", "resnet20", "vgg_small"])
def test_num_classes_in_channels_eta(name):
    size = SPECS[name][0]
    model = get_model(name, num_classes=7, in_channels=2, eta=None)
    assert model(torch.randn(2, 2, size, size)).shape == (2, 7)
    assert all(m.eta is None for m in model.modules() if isinstance(m, AdderConv2d))


def test_imagenet_resnets_take_any_size():
    model = get_model("resnet18", num_classes=3, kind="adder").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 80)).shape == (1, 3)


def test_adder_training_step():
    model = get_model("lenet5_bn")
    model(torch.randn(4, 1, 28, 28)).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_kind_and_name_validation():
    with pytest.raises(ValueError, match="'adder', 'conv'"):
        get_model("resnet20", kind="mul")
    with pytest.raises(ValueError, match="lenet5_bn, resnet18, resnet20, resnet32, resnet50, vgg_small"):
        get_model("resnet99")
    assert count_layers(get_model("ResNet20")).adder == 20  # case and '-' are forgiven
    assert count_layers(get_model("lenet5-bn")).adder == 5
    with pytest.raises(ValueError, match="first_layer must be one of 'adder', 'conv'"):
        get_model("lenet5_bn", first_layer="linear")
    with pytest.raises(ValueError, match="last_layer must be one of"):
        get_model("lenet5_bn", last_layer="Conv")


@pytest.mark.parametrize("first, last", [("adder", "adder"), ("conv", "adder"), ("adder", "conv"), ("conv", "conv")])
def test_lenet_endpoints(first, last):
    # The paper's MNIST AdderNet is all-adder; keeping either endpoint multiplicative stays an option.
    model = get_model("lenet5_bn", kind="adder", first_layer=first, last_layer=last, eta=None)
    types = {"adder": AdderConv2d, "conv": nn.Conv2d}
    assert type(model.conv1) is types[first] and type(model.fc3) is types[last]
    assert all(type(getattr(model, n)) is AdderConv2d for n in ("conv2", "fc1", "fc2"))
    assert all(m.eta is None for m in model.modules() if isinstance(m, AdderConv2d))
    conv = get_model("lenet5_bn", kind="conv", first_layer=first, last_layer=last)
    assert type(conv.conv1) is types[first] and type(conv.fc3) is types[last] and type(conv.fc1) is nn.Conv2d
    x = torch.randn(3, 1, 28, 28)
    model(x).logsumexp(1).sum().backward()
    assert model.conv1.weight.grad is not None and model.fc3.weight.grad is not None
    # The head (fc3 + bn5) is whatever fc3 is. (Each train-mode call moves the centring offsets'
    # input means, which the BatchNorms remove up to float rounding: compare in eval mode.)
    model.eval()
    assert torch.equal(model.head(model.forward_features(x)), model(x))


def test_cifar_resnet_refuses_other_sizes():
    with pytest.raises(ValueError, match="32x32"):
        get_model("resnet20")(torch.randn(1, 3, 64, 64))


def test_cifar_resnet_layout_matches_official():
    """Module names of the official resnet20.py, generated here from its layout."""
    expected = {"conv1": nn.Conv2d, "fc": nn.Conv2d}
    for stage in (1, 2, 3):
        for block in range(3):
            expected[f"layer{stage}.{block}.conv1"] = AdderConv2d
            expected[f"layer{stage}.{block}.conv2"] = AdderConv2d
        if stage > 1:
            expected[f"layer{stage}.0.downsample.0"] = AdderConv2d
    model = get_model("resnet20")
    got = {n: type(m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, AdderConv2d))}
    assert got == expected
    assert model.layer2[0].downsample[0].stride == (2, 2) and model.layer2[0].downsample[0].kernel_size == (1, 1)
    assert isinstance(model.bn2, nn.BatchNorm2d) and model.bn2.num_features == 10
    assert all(m.bias is None for m in model.modules() if isinstance(m, (nn.Conv2d, AdderConv2d)))


# ----------------------------------------------------------------- official checkpoints

def official_state(model, drop_counters=False):
    """The state dict as the official code saves it: DataParallel prefix, adder2d's `adder`/`b`."""
    adders = {n for n, m in model.named_modules() if isinstance(m, AdderConv2d)}
    out = {}
    for key, value in model.state_dict().items():
        owner, _, leaf = key.rpartition(".")
        if drop_counters and leaf == "num_batches_tracked":
            continue
        if owner in adders:
            leaf = {"weight": "adder", "bias": "b"}[leaf]
        out[f"module.{owner}.{leaf}"] = value.clone()
    return out


def trained_like(name, **kw):
    """A model whose BN statistics and weights are not their initial values."""
    torch.manual_seed(0)
    model = get_model(name, **kw)
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            m.bn_centered = False  # the official code's adder2d has no BatchNorm centring (issue 22)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            m.num_batches_tracked.fill_(123)
    return model.eval()


@pytest.mark.parametrize("name", ["resnet20", "lenet5_bn"])
@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_load_official_roundtrip(tmp_path, name, wrap):
    size, cin = SPECS[name][:2]
    src = trained_like(name)
    state = official_state(src)
    assert "module.layer1.0.conv1.adder" in state or "module.conv2.adder" in state
    blob = state if wrap is None else {wrap: state, "epoch": 399, "best_acc": 91.8}
    path = tmp_path / "ckpt.pth"
    torch.save(blob, path)
    loaded = load_official(path, name).eval()
    x = torch.randn(2, cin, size, size)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))
    assert loaded.bn1.num_batches_tracked.item() == 123


def test_load_official_cifar100_and_missing_counters(tmp_path):
    src = trained_like("resnet20", num_classes=100)
    path = tmp_path / "c100.pth"
    torch.save(official_state(src, drop_counters=True), path)
    loaded = load_official(str(path), "resnet20").eval()  # 100 classes read from fc's weight
    assert loaded.fc.out_channels == 100 and loaded.bn2.num_features == 100
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


def test_load_official_infers_in_channels():
    src = trained_like("lenet5_bn", in_channels=3, num_classes=5)
    loaded = load_official(official_state(src), "lenet5_bn").eval()
    assert loaded.conv1.in_channels == 3 and loaded.fc3.out_channels == 5
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), src(x))


def test_load_official_accepts_a_mapping():
    src = trained_like("resnet20")
    loaded = load_official({"state_dict": official_state(src)}, "resnet20")
    assert torch.equal(loaded.layer3[2].conv2.weight, src.layer3[2].conv2.weight)


def test_load_official_lists_every_bad_key():
    state = official_state(trained_like("resnet20"))
    for key in ("module.layer1.0.conv1.adder", "module.bn2.running_var", "module.fc.weight"):
        del state[key]
    state["module.layer9.0.conv1.adder"] = torch.zeros(1)
    state["module.bn1.adder"] = torch.zeros(1)  # 'adder' is renamed only inside adder layers
    with pytest.raises(OfficialCheckpointError) as info:
        load_official(state, "resnet20")
    msg = str(info.value)
    assert "missing keys (3): bn2.running_var, fc.weight, layer1.0.conv1.weight" in msg
    assert "unexpected keys (2): module.bn1.adder, module.layer9.0.conv1.adder" in msg
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    # Non-strict loads what fits.
    model = load_official(state, "resnet20", strict=False)
    assert torch.equal(model.layer1[0].conv2.weight, state["module.layer1.0.conv2.adder"])


def test_load_official_shape_mismatch_raises():
    state = official_state(trained_like("resnet20"))
    state["module.layer1.0.conv1.adder"] = torch.zeros(16, 16, 5, 5)
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official(state, "resnet20")


def test_adder_bias_b_is_renamed():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), AdderConv2d(2, 2, 3, bias=True))
    mapped, origin = _rename({"module.1.adder": 1, "module.1.b": 2, "module.0.weight": 3}, model)
    assert mapped == {"1.weight": 1, "1.bias": 2, "0.weight": 3}
    assert origin["1.bias"] == "module.1.b"


class Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    Payload.ran = True
    return {}


def test_checkpoint_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    state = official_state(trained_like("resnet20"))
    state["extra"] = Payload()
    torch.save({"state_dict": state}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_official(path, "resnet20")
    assert not Payload.ran


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_official("/nonexistent/ckpt.pth", "resnet20")
