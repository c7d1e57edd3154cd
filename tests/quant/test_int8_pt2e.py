"""addernet.quantize's default mode: the whole graph on torchao's PT2E flow, the adder layers lowered to
the uint8 kernels (addernet.quant.pt2e)."""
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import addernet
from addernet.backends.reference import adder_conv2d_u8 as reference_u8
from addernet.quant.pt2e import pt2e_available

from helpers.int8 import needs_native

pytestmark = [needs_native, pytest.mark.skipif(pt2e_available() is not None, reason=str(pt2e_available())),
              pytest.mark.usefixtures("one_torch_thread")]

U8 = "adder_conv2d_u8"


class Block(nn.Module):
    """A ResNet basic block of adder layers, with a 1x1 strided adder shortcut when the shape changes."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.a1 = addernet.AdderConv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.r1 = nn.ReLU()
        self.a2 = addernet.AdderConv2d(cout, cout, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else nn.Sequential(
            addernet.AdderConv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.short is None else self.short(x)
        return torch.relu(self.b2(self.a2(self.r1(self.b1(self.a1(x))))) + identity)


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = Block(8, 8, 1)
        self.block2 = Block(8, 16, 2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.block2(self.block1(self.stem(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def trained_res():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    model = Res()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(6):
        for i in torch.randperm(1400).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[i]), y[i]).backward()
            opt.step()
    model.eval()
    calib = [(x[i:i + 100], y[i:i + 100]) for i in range(0, 400, 100)]
    return model, calib, x[1400:], y[1400:]


@pytest.fixture(scope="module")
def quantized(trained_res):
    model, calib, _, _ = trained_res
    q = addernet.quantize(model, calib)
    q.eval()  # an exported module refuses eval() unless torchao's switch is installed: it is
    return q


def _nodes(gm, name):
    return [n for n in gm.graph.nodes if n.op == "call_function" and getattr(n.target, "__name__", "").startswith(name)]


def test_every_adder_layer_is_lowered_and_none_stays_float(quantized):
    q = quantized
    assert len(q.quantized_layers) == 5 and len(_nodes(q, U8)) == 5
    assert not _nodes(q, "adder_conv2d.") and not _nodes(q, "adder_conv2d_fused")
    # torch's int8 ops around them: the stem conv and the classifier read dequantised bytes
    convs = [n for n in q.graph.nodes if n.target == torch.ops.aten.conv2d.default]
    assert convs and all(c.args[0].target == torch.ops.quantized_decomposed.dequantize_per_tensor.default
                         for c in convs)


def test_chained_adders_stay_in_bytes_and_block_input_is_quantised_once(quantized):
    q = quantized
    u8 = _nodes(q, U8)
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    # a1 -> a2 in each block: a1 writes a2's grid (requantising epilogue), a2 reads its bytes
    chained = [n for n in u8 if n.args[0].target == torch.ops.addernet.adder_conv2d_u8.default]
    assert len(chained) == 2
    for n in chained:
        assert n.args[0].kwargs.get("out_scale") is not None
    # block1's input: one uint8 tensor read by a1 and, dequantised, by the residual add
    adds = [n for n in q.graph.nodes if n.target == torch.ops.aten.add.Tensor]
    assert len(adds) == 2
    for add in adds:  # quantised residual adds: both inputs dequantised bytes
        assert all(a.target == dq and a.args[5] == torch.uint8 for a in add.args[:2])
    block1_in = adds[0].args[1].args[0]
    assert any(n.args[0] is block1_in for n in u8)
    # block2's input feeds its a1 and its 1x1 shortcut as the same bytes
    shortcut = [n for n in u8 if q.get_buffer(n.args[1].target).shape[-1] == 1]
    assert len(shortcut) == 1
    assert any(n is not shortcut[0] and n.args[0] is shortcut[0].args[0] for n in u8)


def test_lowered_ops_are_bit_exact_against_the_reference(quantized, trained_res):
    # Each uint8 op, on the inputs it receives, equals the int64 reference definition to the bit.
    q = quantized
    _, _, x, _ = trained_res
    seen = []

    class Check(fx.Interpreter):
        def call_function(self, target, args, kwargs):
            out = super().call_function(target, args, kwargs)
            if target == torch.ops.addernet.adder_conv2d_u8.default:
                ref = reference_u8(*args, **kwargs)
                seen.append((out.dtype, (out.long() - ref.long()).abs().max().item() if out.dtype == torch.uint8
                             else (out - ref).abs().max().item()))
            return out

    with torch.no_grad():
        Check(q).run(x[:16])
    assert len(seen) == 5
    for dtype, err in seen:
        assert err == 0 if dtype == torch.uint8 else err <= 1e-5


def test_accuracy_close_to_float(quantized, trained_res):
    model, _, x, y = trained_res
    with torch.no_grad():
        f, i8 = model(x), quantized(x)
    float_acc = (f.argmax(1) == y).float().mean().item()
    int8_acc = (i8.argmax(1) == y).float().mean().item()
    assert float_acc > 0.6, "the small model did not train"
    assert abs(float_acc - int8_acc) <= 0.03
    assert (f.argmax(1) == i8.argmax(1)).float().mean() > 0.95


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_input_raises_at_the_graph_input(quantized, trained_res, value):
    x = trained_res[2][:4].clone()
    x[2, 0, 3, 3] = value
    with torch.no_grad(), pytest.raises(ValueError, match="NaN or inf"):
        quantized(x)


def test_compiled_with_freezing_matches_eager_and_still_refuses_nan(quantized, trained_res):
    from addernet.quant import compile_frozen

    x = trained_res[2][:32]
    c = compile_frozen(quantized, x)
    with torch.no_grad():
        torch.testing.assert_close(c(x), quantized(x), rtol=1e-4, atol=1e-4)
        bad = x.clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(Exception, match="NaN or inf"):
            c(bad)


def test_converted_user_cnn_has_no_float_adder_left():
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    adder = addernet.convert(cnn, keep_first=False).eval()
    assert sum(isinstance(m, addernet.AdderConv2d) for m in adder.modules()) == 3
    q = addernet.quantize(adder, [torch.rand(8, 1, 12, 12) for _ in range(2)])
    assert len(q.quantized_layers) == 3 and not _nodes(q, "adder_conv2d_fused") and not _nodes(q, "adder_conv2d.")
    out = q(torch.rand(3, 1, 12, 12))  # any batch size: the export's batch is dynamic
    assert out.shape == (3, 4) and torch.isfinite(out).all()


def test_bad_mode_is_a_clear_error(trained_res):
    with pytest.raises(ValueError, match="mode must be"):
        addernet.quantize(trained_res[0], trained_res[1], mode="fx")
