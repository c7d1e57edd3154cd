"""AdderConv2d(bn_centered=True) (issue 22): a detached per-filter offset before the BatchNorm.

Training is unchanged (the BatchNorm removes per-channel constants and the offset has no
gradient); fuse and quantize fold the offset exactly; checkpoints say whether they were centred;
convert centres the adder layers a BatchNorm follows and warns about the others.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import addernet
from addernet import AdderConv2d
from addernet.models import get_model


def _pair(seed=0, **kw):
    torch.manual_seed(seed)
    centred = get_model("lenet5_bn", kind="adder", **kw)
    plain = copy.deepcopy(centred)
    for m in plain.modules():
        if isinstance(m, AdderConv2d):
            m.bn_centered = False
    return centred, plain


def test_models_are_centred_and_the_layer_alone_is_not():
    model = get_model("resnet20", kind="adder")
    adders = [m for m in model.modules() if isinstance(m, AdderConv2d)]
    assert len(adders) == 20 and all(m.bn_centered for m in adders)
    assert not AdderConv2d(2, 3, 3).bn_centered  # computes exactly -sum|x - w|
    assert "bn_centered=True" in repr(adders[0])


def test_train_mode_forward_and_gradients_unchanged():
    centred, plain = _pair()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    outs = []
    for model in (centred, plain):
        model.train()
        for m in model.modules():
            if isinstance(m, AdderConv2d) and m.bn_centered:
                m.input_mean.uniform_(-1, 1)  # any offset: the BatchNorm removes it
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        outs.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (l1, g1), (l2, g2) = outs
    # Float rounding only: the outputs are ~1e2 and the offsets ~1e2, so 1e-4 relative is ~1e3 ulps of
    # the activations' own rounding, far below any real change.
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-5)
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-3, atol=1e-4 * g2[name].abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")
    # The running statistics differ by the offset, and only in the mean.
    bn_c, bn_p = centred.bn1, plain.bn1
    torch.testing.assert_close(bn_c.running_var, bn_p.running_var, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(bn_c.running_mean, bn_p.running_mean)


def test_input_mean_tracks_the_input_in_train_mode_only():
    layer = AdderConv2d(3, 4, 1, bn_centered=True)
    x = torch.randn(8, 3, 5, 5) + torch.tensor([1.0, -2.0, 3.0]).view(1, 3, 1, 1)
    layer.eval()
    layer(x)
    assert torch.equal(layer.input_mean, torch.zeros(3))
    layer.train()
    for _ in range(200):
        layer(x)
    torch.testing.assert_close(layer.input_mean, x.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
    off = layer.centering_offset()
    ref = (layer.weight - layer.input_mean.view(1, 3, 1, 1)).abs().sum(dim=(1, 2, 3))
    torch.testing.assert_close(off, ref.detach())
    with torch.no_grad():
        plain = copy.deepcopy(layer)
        plain.bn_centered = False
        torch.testing.assert_close(layer(x), plain(x) + off.view(1, -1, 1, 1))


def _trained_like(model, shape=(32, 1, 28, 28)):
    """Running statistics of a short training pass, so that the folded offsets matter."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(shape))
    return model.eval()


def test_fuse_folds_the_offset():
    model = _trained_like(_pair()[0])
    x = torch.randn(4, 1, 28, 28)
    fused = addernet.fuse(model)
    assert len(fused.fused_layers) == 5
    with torch.no_grad():
        ref, got = model(x), fused(x)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def _uncentred_twin(model):
    """The same eval-mode function without centring: each BatchNorm's running mean moved by the offset."""
    twin = copy.deepcopy(model)
    pairs = [("conv1", "bn1"), ("conv2", "bn2"), ("fc1", "bn3"), ("fc2", "bn4"), ("fc3", "bn5")]
    for conv, bn in pairs:
        layer = twin.get_submodule(conv)
        if not isinstance(layer, AdderConv2d):
            continue
        with torch.no_grad():
            twin.get_submodule(bn).running_mean.sub_(layer.centering_offset())
        layer.bn_centered = False
    return twin


def test_quantize_folds_the_offset_as_fuse_does():
    model = _trained_like(_pair(first_layer="conv", last_layer="conv")[0])
    twin = _uncentred_twin(model)
    x = torch.randn(64, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(model(x), twin(x), rtol=1e-4, atol=1e-3)
    calib = [(torch.randn(32, 1, 28, 28), None) for _ in range(2)]
    # The adder-only mode, whose layers these checks compare one by one (PT2E quantises the whole
    # graph, so the centred and uncentred twins get different activation grids around the adders).
    qa, qb = addernet.quantize(model, calib, mode="adder"), addernet.quantize(twin, calib, mode="adder")
    assert qa.quantized_layers == qb.quantized_layers and qa.quantized_layers
    with torch.no_grad():
        a, b = qa(x), qb(x)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def test_quantize_folds_the_offset_of_an_unfused_layer():
    torch.manual_seed(0)
    layer = AdderConv2d(3, 4, 3, padding=1, bias=False, bn_centered=True)
    layer.input_mean.uniform_(0, 1)
    stem = nn.Conv2d(3, 3, 1)
    model = nn.Sequential(stem, layer, nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    x = torch.rand(8, 3, 6, 6)
    q = addernet.quantize(model, [(x, None)], mode="adder")  # PT2E: an unfused centred layer is refused
    assert q.quantized_layers == ["1"]
    with torch.no_grad():
        a, b = q[1](stem(x)), layer(stem(x))
    torch.testing.assert_close(a, b, rtol=0, atol=0.02 * b.abs().max().item())


def test_checkpoints_say_whether_they_are_centred():
    centred, plain = _pair()
    _trained_like(centred)
    fresh = get_model("lenet5_bn", kind="adder")
    fresh.load_state_dict(centred.state_dict())
    assert fresh.conv1.bn_centered and torch.equal(fresh.conv1.input_mean, centred.conv1.input_mean)
    # A state dict saved before centring existed (no input_mean) keeps its raw statistics' meaning.
    old = {k: v for k, v in plain.state_dict().items() if not k.endswith("input_mean")}
    fresh = get_model("lenet5_bn", kind="adder")
    fresh.load_state_dict(old)
    assert not any(m.bn_centered for m in fresh.modules() if isinstance(m, AdderConv2d))


def test_load_official_is_uncentred_and_exact():
    torch.manual_seed(0)
    ref = get_model("resnet20", kind="adder")
    for m in ref.modules():
        if isinstance(m, AdderConv2d):
            m.bn_centered = False
    ref = _trained_like(ref, (8, 3, 32, 32))
    state = {f"module.{k}".replace(".weight", ".adder") if _is_adder(ref, k) else f"module.{k}": v
             for k, v in ref.state_dict().items()}
    model = addernet.models.load_official(state, "resnet20").eval()
    assert not any(m.bn_centered for m in model.modules() if isinstance(m, AdderConv2d))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))


def _is_adder(model, key):
    owner, _, leaf = key.rpartition(".")
    return leaf == "weight" and isinstance(model.get_submodule(owner), AdderConv2d)


class _UserNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.a, self.bn_a = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=1)  # no BatchNorm after it
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = torch.relu(self.bn_a(self.a(self.stem(x))))
        return self.head(self.b(x).mean(dim=(2, 3)))


def test_convert_centres_layers_a_batchnorm_follows_and_warns_about_the_others():
    with pytest.warns(UserWarning, match=r"'b' feed no BatchNorm2d"):
        net = addernet.convert(_UserNet())
    assert net.a.bn_centered and not net.b.bn_centered
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seq = addernet.convert(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),
                                             nn.ReLU(), nn.Conv2d(4, 2, 1)))
    assert seq[1].bn_centered
    off = addernet.convert(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4),
                                         nn.Conv2d(4, 2, 1)), bn_centered=False)
    assert not off[1].bn_centered


class _Untraceable(nn.Module):
    """Data-dependent Python: fx cannot trace it, so convert reads registration order."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 1)
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.head(self.bn(self.conv(self.stem(x))))


def test_convert_falls_back_to_registration_order():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = addernet.convert(_Untraceable())
    assert net.conv.bn_centered
