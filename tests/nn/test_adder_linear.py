"""AdderLinear (Y = -sum_i |x_i - W[o, i]| + b) against a float64 statement of its formulas, on every
backend that runs here, and its convert mapping and counting rule."""
import math

import pytest
import torch
from torch import nn

import addernet
from addernet import backends
from addernet.bench.counts import count_ops
from addernet.nn import AdderLinear

BACKENDS = [b for b in backends.available() if backends.descriptor(b).why_not_on("cpu") is None]


def linear_reference(x, w, b, g):
    """(Y, grad_X, grad_W, grad_b) in float64, written out: the paper's gradients, full precision
    for W and HardTanh for X, as AdderConv2d's."""
    x, w, g = x.double().reshape(-1, x.shape[-1]), w.double(), g.double().reshape(-1, w.shape[0])
    diff = x[:, None, :] - w[None, :, :]                        # (N, O, I)
    y = -diff.abs().sum(-1) + (0 if b is None else b.double())
    gx = (g[:, :, None] * (w[None] - x[:, None]).clamp(-1, 1)).sum(1)
    gw = (g[:, :, None] * diff).sum(0)
    return y, gx, gw, g.sum(0)


# (leading dims, in_features, out_features): batch of one, odd sizes, a layer wider than the SIMD
# width, extra leading dims (as nn.Linear takes them).
SHAPES = [((1,), 1, 1), ((5,), 7, 3), ((8,), 64, 10), ((3,), 33, 17), ((2, 4), 9, 5), ((16,), 130, 12)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("lead,fin,fout", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_match_the_float64_reference(backend, lead, fin, fout, bias):
    gen = torch.Generator().manual_seed(fin * 100 + fout)
    layer = AdderLinear(fin, fout, bias=bias, eta=None, backend=backend, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(fout, fin, generator=gen, dtype=torch.float64))
        if bias:
            layer.bias.copy_(torch.randn(fout, generator=gen, dtype=torch.float64))
    # Inputs near the weights, so that |W - X| < 1 at many taps and the clamp is tested on both sides.
    x = (torch.randn(*lead, fin, generator=gen, dtype=torch.float64) * 0.7).requires_grad_()
    g = torch.randn(*lead, fout, generator=gen, dtype=torch.float64)
    y = layer(x)
    y.backward(g)
    ry, rgx, rgw, rgb = linear_reference(x.detach(), layer.weight.detach(), layer.bias, g)
    assert y.shape == (*lead, fout)
    torch.testing.assert_close(y.reshape(-1, fout), ry)
    torch.testing.assert_close(x.grad.reshape(-1, fin), rgx)
    torch.testing.assert_close(layer.weight.grad, rgw)
    if bias:
        torch.testing.assert_close(layer.bias.grad, rgb)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_and_nan(backend):
    x = torch.randn(6, 20)
    w = torch.randn(4, 20)
    y = addernet.functional.adder_linear(x, w, backend=backend)
    torch.testing.assert_close(y.double(), linear_reference(x, w, None, torch.zeros(6, 4))[0], rtol=1e-5, atol=1e-4)
    x[2, 3] = float("nan")
    y = addernet.functional.adder_linear(x, w, backend=backend)
    assert y[2].isnan().all() and not y[[0, 1, 3, 4, 5]].isnan().any()


def test_eta_scales_the_weight_gradient_as_adder_conv2d_does():
    torch.manual_seed(0)
    raw = AdderLinear(12, 5, eta=None)
    scaled = AdderLinear(12, 5, eta=0.3)
    scaled.load_state_dict(raw.state_dict())
    x = torch.randn(4, 12)
    raw(x).square().sum().backward()
    scaled(x).square().sum().backward()
    g = raw.weight.grad
    torch.testing.assert_close(scaled.weight.grad, g * 0.3 * math.sqrt(g.numel()) / g.norm())
    torch.testing.assert_close(scaled.bias.grad, raw.bias.grad)


def test_second_order_gradient_runs():
    """A gradient penalty differentiates the input gradient: the 1x1 view inherits the
    convolution's double backward."""
    layer = AdderLinear(8, 3, eta=None, dtype=torch.float64)
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    gx, = torch.autograd.grad(layer(x).sum(), x, create_graph=True)
    gx.square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"adder_linear: input \(2, 5\) and weight \(3, 4\)"):
        addernet.functional.adder_linear(torch.randn(2, 5), torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"bias has shape \(2,\), expected \(3,\)"):
        addernet.functional.adder_linear(torch.randn(2, 4), torch.randn(3, 4), torch.randn(2))


def _mlp():
    return nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def test_convert_maps_linear_only_when_asked():
    model = _mlp()
    assert addernet.count_layers(addernet.convert(model)).as_dict() == {"adder": 0, "conv": 0, "linear": 3}
    adder = addernet.convert(model, linear=True)
    assert isinstance(adder[2], AdderLinear) and adder[2].in_features == 16 and adder[2].out_features == 16
    assert isinstance(adder[0], nn.Linear) and isinstance(adder[4], nn.Linear)  # endpoints kept
    assert addernet.count_layers(adder).as_dict() == {"adder": 1, "conv": 0, "linear": 2}
    both = addernet.convert(model, linear=True, keep_first=False, keep_last=False, copy_weights=True)
    assert all(isinstance(both[i], AdderLinear) for i in (0, 2, 4))
    torch.testing.assert_close(both[0].weight, model[0].weight)
    assert addernet.convert(both, linear=True).__class__ is nn.Sequential  # converting twice is stable
    with pytest.raises(ValueError, match="paper's gradients only"):
        addernet.convert(model, linear=True, grad_mode="exact")


def test_counting_rule():
    """An adder linear layer counts as a 1x1 adder convolution: per output, in_features taps, each a
    subtraction, an abs and an accumulation, and no multiplication."""
    model = nn.Sequential(AdderLinear(10, 7), nn.ReLU())
    c = count_ops(model, (4, 10))
    row = c.layers[0]
    taps = 4 * 7 * 10
    assert (row.type, row.taps, row.mults, row.abs, row.acc_adds, row.adds) == ("adder", taps, 0, taps, taps,
                                                                                2 * taps + 4 * 7)
