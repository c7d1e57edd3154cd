"""The layer, the op registrations, backend selection and the errors a user meets."""
from __future__ import annotations

import math
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

import addernet
from addernet import AdderConv2d
from addernet import functional as AF

NATIVE = "native" in addernet.backends.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")


# ------------------------------------------------------------------ registrations

@needs_native
def test_opcheck_forward_backward_and_fused():
    x = torch.randn(2, 4, 6, 5, requires_grad=True)
    w = torch.randn(6, 2, 3, 2, requires_grad=True)
    conf = ([2, 1], [1, 0], [1, 2], 2)
    torch.library.opcheck(torch.ops.addernet.adder_conv2d.default, (x, w, *conf))
    y = torch.ops.addernet.adder_conv2d(x, w, *conf)
    g = torch.randn_like(y)
    for mask in ([True, True], [True, False], [False, True]):
        torch.library.opcheck(torch.ops.addernet.adder_conv2d_backward.default,
                              (g, x.detach(), w.detach(), *conf, mask))
    scale, shift = torch.rand(6), torch.randn(6)
    torch.library.opcheck(torch.ops.addernet.adder_conv2d_fused.default,
                          (x.detach(), w.detach(), scale, shift, *conf, True))


@pytest.mark.parametrize("backend", [b for b in ("native", "reference") if b in addernet.backends.available()])
def test_torch_compile_fullgraph_matches_eager(backend):
    torch.manual_seed(0)
    model = nn.Sequential(AdderConv2d(3, 8, 3, padding=1, bias=False, backend=backend), nn.BatchNorm2d(8), nn.ReLU(),
                          AdderConv2d(8, 4, 3, stride=2, backend=backend))
    x = torch.randn(2, 3, 9, 9)
    compiled = torch.compile(model, fullgraph=True)
    y_eager = model(x)
    g_eager = torch.autograd.grad(y_eager.square().sum(), model[0].weight)[0]
    y_comp = compiled(x)
    g_comp = torch.autograd.grad(y_comp.square().sum(), model[0].weight)[0]
    torch.testing.assert_close(y_comp, y_eager, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(g_comp, g_eager, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ the layer

def test_eta_scaling_follows_the_official_formula():
    torch.manual_seed(0)
    layer = AdderConv2d(4, 6, 3, padding=1, bias=False, eta=0.2)
    x = torch.randn(3, 4, 7, 7)
    g = torch.randn(3, 6, 7, 7)
    (layer(x) * g).sum().backward()
    raw = torch.autograd.grad((AF.adder_conv2d(x, layer.weight, None, 1, 1) * g).sum(), layer.weight)[0]
    expected = raw * 0.2 * math.sqrt(raw.numel()) / raw.norm()
    torch.testing.assert_close(layer.weight.grad, expected)
    assert math.isclose(layer.weight.grad.norm().item(), 0.2 * math.sqrt(raw.numel()), rel_tol=1e-5)


def test_eta_none_leaves_the_raw_gradient():
    layer = AdderConv2d(2, 3, 3, eta=None)
    x = torch.randn(2, 2, 5, 5)
    layer(x).sum().backward()
    raw = torch.autograd.grad(AF.adder_conv2d(x, layer.weight, layer.bias).sum(), layer.weight)[0]
    torch.testing.assert_close(layer.weight.grad, raw)


def test_layer_looks_like_conv2d():
    layer = AdderConv2d(4, 8, (3, 1), stride=2, padding=(1, 0), dilation=1, groups=2, bias=False)
    conv = nn.Conv2d(4, 8, (3, 1), stride=2, padding=(1, 0), groups=2, bias=False)
    assert repr(layer) == repr(conv).replace("Conv2d", "AdderConv2d")
    assert "eta=0.5" in repr(AdderConv2d(1, 1, 1, eta=0.5))
    assert {k: v.shape for k, v in layer.state_dict().items()} == {k: v.shape for k, v in conv.state_dict().items()}
    assert not isinstance(layer, nn.Conv2d)


def test_state_dict_round_trip(tmp_path):
    a, b = AdderConv2d(3, 5, 3, padding=1), AdderConv2d(3, 5, 3, padding=1)
    torch.save(a.state_dict(), tmp_path / "a.pt")
    b.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True))
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_initialisation_is_standard_normal():
    torch.manual_seed(0)
    layer = AdderConv2d(64, 64, 3)
    assert abs(layer.weight.mean().item()) < 0.02 and abs(layer.weight.std().item() - 1) < 0.02
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes(mode):
    layer = AdderConv2d(2, 3, 3, padding=1, padding_mode=mode)
    conv = nn.Conv2d(2, 3, 3, padding=1, padding_mode=mode)
    x = torch.randn(2, 2, 6, 5)
    expected = AF.adder_conv2d(nn.functional.pad(x, conv._reversed_padding_repeated_twice, mode=mode),
                               layer.weight, layer.bias)
    torch.testing.assert_close(layer(x), expected)
    assert layer(x).shape == conv(x).shape


@pytest.mark.parametrize("kernel,dilation", [((3, 3), 1), ((2, 4), 1), ((3, 2), 2)])
def test_same_and_valid_padding_shapes_follow_conv2d(kernel, dilation):
    x = torch.randn(1, 2, 7, 8)
    for padding in ("same", "valid"):
        layer = AdderConv2d(2, 3, kernel, padding=padding, dilation=dilation)
        conv = nn.Conv2d(2, 3, kernel, padding=padding, dilation=dilation)
        assert layer(x).shape == conv(x).shape
    # 'same' pads with zeros, and a padded tap contributes |w|: the explicit-padding result.
    w = torch.randn(3, 2, *kernel)
    total = [dilation * (k - 1) for k in kernel]
    xp = nn.functional.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
    torch.testing.assert_close(AF.adder_conv2d(x, w, padding="same", dilation=dilation),
                               AF.adder_conv2d(xp, w, dilation=dilation))


# ------------------------------------------------------------------ backends

def test_backend_selection_order(monkeypatch):
    backends = addernet.backends
    default = backends.current()
    assert default == ("native" if NATIVE else "reference")
    monkeypatch.setenv("ADDERNET_BACKEND", "reference")
    assert backends.current() == "reference"
    monkeypatch.delenv("ADDERNET_BACKEND")
    backends.set_backend("reference")
    try:
        assert backends.current() == "reference"
        with backends.use_backend(default):
            assert backends.current() == default
            assert backends.current("reference") == "reference"
        assert backends.current() == "reference"
    finally:
        backends.set_backend(None)
    assert backends.current() == default


def test_unknown_and_unavailable_backends_raise(monkeypatch):
    with pytest.raises(RuntimeError, match="unknown backend 'fastest'"):
        addernet.backends.set_backend("fastest")
    monkeypatch.setenv("ADDERNET_BACKEND", "nope")
    with pytest.raises(RuntimeError, match="nope"):
        AF.adder_conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3))


def test_missing_native_build_falls_back_with_one_warning():
    code = r"""
import importlib.abc, sys, warnings
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        return None if name != "addernet._C" else None
    def find_module(self, *a): return None
# Shadow the built module so the package believes it was never built.
import importlib.machinery
orig = importlib.machinery.PathFinder.find_spec
def find_spec(name, path=None, target=None):
    return None if name == "addernet._C" else orig(name, path, target)
importlib.machinery.PathFinder.find_spec = staticmethod(find_spec)
import torch, addernet
assert addernet.backends.available()[-1] == "reference" and "native" not in addernet.backends.available()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    m = addernet.AdderConv2d(2, 2, 3)
    m(torch.randn(1, 2, 5, 5)); m(torch.randn(1, 2, 5, 5))
msgs = [str(w.message) for w in caught if "native extension" in str(w.message)]
assert len(msgs) == 1, msgs
assert "pip install --no-build-isolation" in msgs[0]
try:
    addernet.backends.set_backend("native")
except RuntimeError as e:
    assert "not built" in str(e)
else:
    raise AssertionError("native should be unavailable")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr


# ------------------------------------------------------------------ bad input

X = torch.randn(2, 4, 8, 8)
W = torch.randn(6, 2, 3, 3)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(input=torch.randn(4, 8, 8)), ValueError, r"4-D input.*\(4, 8, 8\)"),
        (dict(weight=torch.randn(6, 2, 3)), ValueError, r"4-D weight.*\(6, 2, 3\)"),
        (dict(groups=3), ValueError, "groups=3 does not divide the input's 4 channels"),
        (dict(groups=1), ValueError, r"input has 4 channels but weight \(6, 2, 3, 3\)"),
        (dict(weight=torch.randn(5, 2, 3, 3)), ValueError, "groups=2 does not divide the weight's 5"),
        (dict(padding=-1), ValueError, "padding must be non-negative"),
        (dict(stride=0), ValueError, "stride must be positive"),
        (dict(stride=(1, -2)), ValueError, "stride must be positive"),
        (dict(dilation=0), ValueError, "dilation must be positive"),
        (dict(input=torch.randn(2, 4, 2, 2)), ValueError, r"output size would be 0x0"),
        (dict(weight=torch.randn(6, 2, 3, 3, dtype=torch.float64)), TypeError, "float32.*float64 differ"),
        (dict(weight=torch.randn(6, 2, 3, 3, device="meta")), RuntimeError, "input is on cpu but weight is on meta"),
        (dict(bias=torch.randn(5)), ValueError, r"bias must have shape \(6,\)"),
        (dict(padding="full"), ValueError, "padding must be"),
        (dict(padding="same", stride=2), ValueError, "'same' is not supported for strided"),
        (dict(input=torch.randint(0, 3, (2, 4, 8, 8)), weight=torch.randint(0, 3, (6, 2, 3, 3))),
         TypeError, "floating-point"),
    ],
)
def test_bad_input_errors_name_the_problem(kwargs, exc, match):
    args = dict(input=X, weight=W, bias=None, stride=1, padding=0, dilation=1, groups=2)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        AF.adder_conv2d(**args)


@needs_native
def test_native_op_checks_its_own_arguments():
    # Called directly, without the Python checks in front, the C++ side still names the shapes.
    with pytest.raises(RuntimeError, match=r"input \[2, 4, 8, 8\] has 4 channels but weight \[6, 3, 3, 3\]"):
        torch.ops.addernet.adder_conv2d(X, torch.randn(6, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(RuntimeError, match="padding must be non-negative"):
        torch.ops.addernet.adder_conv2d(X, W, [1, 1], [-1, 0], [1, 1], 2)
    # A kernel one wider than the image at stride 2: conv2d's floor division gives no output.
    with pytest.raises(RuntimeError, match="output size would be 0x"):
        torch.ops.addernet.adder_conv2d(torch.randn(1, 4, 2, 8), W, [2, 2], [0, 0], [1, 1], 2)
    with pytest.raises(RuntimeError, match="CPU supports float32, float64 and bfloat16"):
        torch.ops.addernet.adder_conv2d(X.half(), W.half(), [1, 1], [0, 0], [1, 1], 2)
    y = torch.ops.addernet.adder_conv2d(X, W, [1, 1], [0, 0], [1, 1], 2)
    with pytest.raises(RuntimeError, match=r"grad_output has shape \[2, 6, 5, 5\], expected \[2, 6, 6, 6\]"):
        torch.ops.addernet.adder_conv2d_backward(y[..., :5, :5], X, W, [1, 1], [0, 0], [1, 1], 2, [True, True])
    with pytest.raises(RuntimeError, match=r"scale must have shape \(6\)"):
        torch.ops.addernet.adder_conv2d_fused(X, W, torch.ones(5), None, [1, 1], [0, 0], [1, 1], 2, False)


def test_eta_must_be_positive():
    with pytest.raises(ValueError, match="eta must be positive"):
        AdderConv2d(1, 1, 1, eta=0.0)
