"""The uint8 adder op (torch.ops.addernet.adder_conv2d_u8) and addernet.quantize.

The kernels are checked bit-exact against an integer reference that walks the taps in int64
(no unfold), on every ISA this CPU runs.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import addernet
from addernet.backends.native.extension import native_available
from addernet.nn import QuantAdderConv2d
from addernet.quant import adder_conv2d_u8, dequantize_tensor, quantize_tensor, shared_qparams

from helpers.int8 import int_reference, kernel_sets as _kernel_sets, needs_native  # noqa: E402


# The odd-shape grid: strides, paddings, dilations, groups, batch 0, tile and k-block edges.
GRID = [
    dict(n=3, c=5, h=13, w=11, o=13, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=2, c=6, h=14, w=14, o=16, k=(5, 5), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=2, c=4, h=23, w=3, o=6, k=(2, 3), stride=(1, 1), padding=(2, 1), dilation=(2, 1), groups=2),
    dict(n=2, c=8, h=17, w=17, o=16, k=(1, 1), stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=2, c=3, h=10, w=9, o=6, k=(3, 2), stride=(2, 3), padding=(1, 0), dilation=(1, 1), groups=3),
    dict(n=37, c=6, h=4, w=4, o=10, k=(4, 4), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=1, c=300, h=5, w=5, o=9, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=2, c=12, h=9, w=9, o=8, k=(3, 3), stride=(2, 2), padding=(3, 3), dilation=(3, 3), groups=2),
    dict(n=0, c=3, h=5, w=5, o=4, k=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    # 81 short runs (4 bytes a tap, dilated along the width), 2592 padded bytes: two k blocks of
    # one-chunk runs, so the short-run kernel adds into sums it stored (not just stores them).
    dict(n=2, c=4, h=20, w=20, o=8, k=(9, 9), stride=(1, 1), padding=(0, 0), dilation=(1, 2), groups=1),
]


def _random_case(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (cfg["n"], cfg["c"], cfg["h"], cfg["w"]), dtype=torch.uint8, generator=g)
    w = torch.randint(0, 256, (cfg["o"], cfg["c"] // cfg["groups"], *cfg["k"]), dtype=torch.uint8, generator=g)
    zp = int(torch.randint(0, 256, (1,), generator=g))
    return x, w, zp, [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]


@needs_native
@pytest.mark.parametrize("isa, vec", _kernel_sets())
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("i", range(len(GRID)))
def test_kernels_bit_exact_against_integer_reference(monkeypatch, isa, vec, threads, i):
    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    monkeypatch.setenv("ADDERNET_U8_VECTOR", vec)
    cfg = GRID[i]
    x, w, zp, conf = _random_case(cfg, seed=i)
    ref = int_reference(x, w, zp, *conf)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        raw = torch.ops.addernet.adder_conv2d_u8(x, w, zp, None, None, *conf)
        # weights stored channels last are read as they lie (the layers keep them so)
        raw_cl = torch.ops.addernet.adder_conv2d_u8(x, w.contiguous(memory_format=torch.channels_last), zp,
                                                    None, None, *conf)
        # random epilogue constants, so that few values fall on a rounding tie of the requantisation
        scale = torch.rand(cfg["o"], generator=torch.Generator().manual_seed(i)) * 4e-3 + 1e-3
        shift = torch.randn(cfg["o"], generator=torch.Generator().manual_seed(i + 1))
        f32 = torch.ops.addernet.adder_conv2d_u8(x, w, zp, scale, shift, *conf, True)
        u8 = torch.ops.addernet.adder_conv2d_u8(x, w, zp, scale, shift, *conf, False, 0.0173, 100)
    finally:
        torch.set_num_threads(old)
    assert raw.dtype == torch.int32 and raw.shape == ref.shape
    assert torch.equal(raw.long(), ref)
    assert torch.equal(raw_cl, raw)
    want = torch.relu(ref.double() * scale.double().view(1, -1, 1, 1) + shift.double().view(1, -1, 1, 1))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), want, rtol=1e-6, atol=1e-5)
    wantq = torch.clamp(torch.round((ref.double() * scale.double().view(1, -1, 1, 1)
                                     + shift.double().view(1, -1, 1, 1)) / 0.0173) + 100, 0, 255)
    assert u8.dtype == torch.uint8
    # float32 epilogue vs float64: a value within an ulp of a rounding boundary may land either side
    assert (u8.double() - wantq).abs().max().item() <= 1 if u8.numel() else True
    if u8.numel():
        assert (u8.double() == wantq).double().mean() > 0.99


@needs_native
@pytest.mark.parametrize("isa, vec", _kernel_sets())
@pytest.mark.parametrize("c, k", [(512, 3), (4096, 3)])
def test_vpsadbw_partial_sums_do_not_overflow(monkeypatch, isa, vec, c, k):
    # All 255 against all 0: every vpsadbw lane gives 8 * 255 = 2040; 16-bit partial sums would
    # wrap after 32 chunks. 512 x 3x3 is ResNet-18's largest patch; 4096 x 3x3 is 8x that.
    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    monkeypatch.setenv("ADDERNET_U8_VECTOR", vec)
    for xv, wv in ((255, 0), (0, 255)):
        x = torch.full((1, c, k, k), xv, dtype=torch.uint8)
        w = torch.full((5, c, k, k), wv, dtype=torch.uint8)
        y = torch.ops.addernet.adder_conv2d_u8(x, w, 0, None, None, [1, 1], [0, 0], [1, 1], 1)
        assert torch.equal(y, torch.full((1, 5, 1, 1), -255 * c * k * k, dtype=torch.int32))


@needs_native
def test_float_input_is_quantised_in_the_op_as_quantize_tensor_does():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 9) * 2
    x[0, 0, 0, :2] = torch.tensor([1e6, -1e6])  # clamped (NaN and inf are refused: test_int8_numerics)
    s, z = 0.03, 117
    w = torch.randint(0, 256, (6, 8, 3, 3), dtype=torch.uint8)
    conf = [[1, 1], [1, 1], [1, 1], 1]
    qx = quantize_tensor(x, s, z)
    want = torch.ops.addernet.adder_conv2d_u8(qx, w, z, None, None, *conf)
    got = torch.ops.addernet.adder_conv2d_u8(x, w, z, None, None, *conf, input_scale=s)
    assert torch.equal(got, want)


@needs_native
@pytest.mark.parametrize("stride", [(2, 2), (3, 2)])
@pytest.mark.parametrize("c", [24, 6])
def test_strided_1x1_reads_only_the_pixels_it_uses(stride, c):
    # An unpadded strided 1x1 layer runs on the subsampled input: uint8 and float inputs alike
    # (6 channels: staged by the narrow whole-plane transpose).
    g = torch.Generator().manual_seed(5)
    x = torch.randint(0, 256, (2, c, 11, 10), dtype=torch.uint8, generator=g)
    w = torch.randint(0, 256, (7, c, 1, 1), dtype=torch.uint8, generator=g)
    conf = [list(stride), [0, 0], [1, 1], 1]
    want = int_reference(x, w, 9, *conf)
    assert torch.equal(torch.ops.addernet.adder_conv2d_u8(x, w, 9, None, None, *conf).long(), want)
    xf = torch.randn(2, c, 11, 10, generator=g)
    got = torch.ops.addernet.adder_conv2d_u8(xf, w, 9, None, None, *conf, input_scale=0.02)
    assert torch.equal(got.long(), int_reference(quantize_tensor(xf, 0.02, 9), w, 9, *conf))


def test_shared_grid_makes_the_l1_distance_exact():
    torch.manual_seed(0)
    x = torch.rand(2, 4, 6, 6) * 3
    w = torch.randn(5, 4, 3, 3)
    s, z = shared_qparams(min(x.min(), w.min()), max(x.max(), w.max()))
    qx, qw = quantize_tensor(x, s, z), quantize_tensor(w, s, z)
    assert dequantize_tensor(torch.tensor([z], dtype=torch.uint8), s, z).item() == 0.0  # 0 is on the grid
    # identity on the grid: |x - w| = s * |qx - qw| (float64 so that both sides are exact)
    xd, wd = (qx.double() - z) * s, (qw.double() - z) * s
    lhs = (xd.flatten()[:, None] - wd.flatten()[None]).abs()
    rhs = s * (qx.long().flatten()[:, None] - qw.long().flatten()[None]).abs().double()
    torch.testing.assert_close(lhs, rhs, rtol=1e-13, atol=0)
    # the op with scale s is the float adder on the dequantised tensors, padded taps (z) included
    conf = dict(stride=1, padding=1, dilation=1, groups=1)
    want = addernet.functional.adder_conv2d(xd, wd, backend="reference", **conf)
    got = adder_conv2d_u8(qx, qw, z, torch.full((5,), s), None, **conf)
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-5)


@needs_native
def test_native_matches_the_reference_definition_and_opcheck():
    from addernet.backends.reference import adder_conv2d_u8 as reference

    x, w, zp, conf = _random_case(GRID[2], seed=3)
    sc, sh = torch.rand(6), torch.randn(6)
    xf = torch.rand(x.shape) * 4
    cases = [
        (x, w, zp, None, None, *conf),
        (x, w, zp, sc, sh, *conf, True),
        (x, w, zp, sc, sh, *conf, False, 0.5, 3),
        (xf, w, zp, sc, None, *conf, False, None, 0, 0.05),
    ]
    for args in cases:
        torch.testing.assert_close(torch.ops.addernet.adder_conv2d_u8(*args), reference(*args), rtol=1e-6, atol=1)
        torch.library.opcheck(torch.ops.addernet.adder_conv2d_u8.default, args)


@needs_native
@pytest.mark.parametrize("call, match", [
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x.float(), w, 0, None, None, [1, 1], [0, 0], [1, 1], 1),
     "needs input_scale"),
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x, w.float(), 0, None, None, [1, 1], [0, 0], [1, 1], 1),
     "weight must be uint8"),
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x, w, 256, None, None, [1, 1], [0, 0], [1, 1], 1),
     "zero_point must be in"),
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x, w, 0, torch.ones(3), None, [1, 1], [0, 0], [1, 1], 1),
     r"scale must have shape \(4\)"),
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x, w, 0, None, None, [1, 1], [0, 0], [1, 1], 1, False, -1.0),
     "out_scale must be positive"),
    (lambda x, w: torch.ops.addernet.adder_conv2d_u8(x, w[:, :2], 0, None, None, [1, 1], [0, 0], [1, 1], 1),
     "channels"),
])
def test_bad_arguments_are_clear_errors(call, match):
    x = torch.zeros(1, 3, 5, 5, dtype=torch.uint8)
    w = torch.zeros(4, 3, 3, 3, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match=match):
        call(x, w)


@needs_native
def test_bad_vector_width_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ADDERNET_U8_VECTOR", "xmm")
    x = torch.zeros(1, 3, 5, 5, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="ADDERNET_U8_VECTOR must be ymm or zmm"):
        torch.ops.addernet.adder_conv2d_u8(x, x[:, :, :3, :3], 0, None, None, [1, 1], [0, 0], [1, 1], 1)
    monkeypatch.setenv("ADDERNET_U8_VECTOR", "")
    assert "vector=" in torch.ops.addernet._u8_info()


@needs_native
def test_patch_too_long_for_int32_is_refused():
    x = torch.zeros(1, (1 << 31) // 255 + 1, 1, 1, dtype=torch.uint8)
    with pytest.raises(RuntimeError, match="overflow"):
        torch.ops.addernet.adder_conv2d_u8(x, x, 0, None, None, [1, 1], [0, 0], [1, 1], 1)


# ---------------------------------------------------------------------------------------- quantize

def quantize_adder(*args, **kwargs):
    """addernet.quantize's adder-only mode (the layers in place), which these tests inspect."""
    return addernet.quantize(*args, mode="adder", **kwargs)


class Small(nn.Module):
    """conv (float) -> adder+BN+ReLU -> adder+BN+ReLU -> pool -> adder+BN+ReLU (grouped) -> linear."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.a1 = addernet.AdderConv2d(8, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.r1 = nn.ReLU()
        self.a2 = addernet.AdderConv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.r2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.a3 = addernet.AdderConv2d(16, 32, 3, padding=1, bias=False, groups=2)
        self.bn3 = nn.BatchNorm2d(32)
        self.r3 = nn.ReLU()
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.relu(self.bn0(self.conv(x)))
        x = self.r2(self.bn2(self.a2(self.r1(self.bn1(self.a1(x))))))
        x = self.r3(self.bn3(self.a3(self.pool(x))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def trained_small():
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    xtr, ytr, xte, yte = x[:1400], y[:1400], x[1400:], y[1400:]
    model = Small()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(3):
        for i in torch.randperm(len(xtr)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xtr[i]), ytr[i]).backward()
            opt.step()
    model.eval()
    calib = [(xtr[i:i + 100], ytr[i:i + 100]) for i in range(0, 400, 100)]
    return model, calib, xte, yte


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_quantized_model_accuracy_close_to_float(trained_small):
    model, calib, xte, yte = trained_small
    q = quantize_adder(model, calib)
    assert q.quantized_layers == ["a1", "a2", "a3"]
    assert model.training is False and isinstance(model.a1, addernet.AdderConv2d)  # the input is untouched
    # a1 -> (bn1, r1 folded) -> a2: a1 requantises to a2's grid, a2 reads bytes
    assert q.a1.out_qparams == q.a2.qparams[0] and q.a2.uint8_input and not q.a3.uint8_input
    with torch.no_grad():
        f, i8 = model(xte), q(xte)
    float_acc, int8_acc = _acc(model, xte, yte), _acc(q, xte, yte)
    assert float_acc > 0.4, "the small model did not train"  # chance is 0.1; 3 short epochs
    assert abs(float_acc - int8_acc) <= 0.02
    assert (f.argmax(1) == i8.argmax(1)).float().mean() > 0.95


def test_quantize_options(trained_small):
    model, calib, xte, yte = trained_small
    float_acc = _acc(model, xte, yte)
    grouped = quantize_adder(model, calib, filter_groups=4, weight_clamp=False)
    assert len(grouped.a1.qparams) == 4 and len(grouped.a3.qparams) == 1  # a3 has groups=2
    assert not grouped.a2.uint8_input  # a grouped layer quantises its input once per group
    assert abs(_acc(grouped, xte, yte) - float_acc) <= 0.03
    plain = quantize_adder(model, calib, requantize=False, percentile=100.0)
    assert not plain.a2.uint8_input and plain.a1.out_qparams is None
    assert abs(_acc(plain, xte, yte) - float_acc) <= 0.03
    with pytest.raises(ValueError, match="percentile"):
        quantize_adder(model, calib, percentile=20)
    with pytest.raises(ValueError, match="no batches"):
        quantize_adder(model, [])


def test_grouped_filters_come_back_in_channel_order(trained_small):
    model, calib, xte, _ = trained_small
    q1 = quantize_adder(model, calib, weight_clamp=False, requantize=False)
    q4 = quantize_adder(model, calib, filter_groups=4, weight_clamp=False, requantize=False)
    x = torch.relu(model.bn0(model.conv(xte[:8])))
    with torch.no_grad():
        a, b = q1.a1(x), q4.a1(x)
    # different grids, the same channels: each channel agrees to a few grid steps
    assert (a - b).abs().max() < 0.2 * a.abs().max()


def test_weight_clamp_is_lossless_inside_the_input_range():
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3) * 2
    x = torch.rand(2, 4, 7, 7)
    scale, shift = torch.rand(6) + 0.5, torch.randn(6)
    common = dict(stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1, x_range=(0.0, 1.0))
    clamped = QuantAdderConv2d(w, scale, shift, False, weight_clamp=True, **common)
    want = addernet.functional.adder_conv2d(x, w, backend="reference", padding=1) * scale.view(1, -1, 1, 1) \
        + shift.view(1, -1, 1, 1)
    # only x's quantisation error is left: a tap is off by at most s/2, K = 36 taps
    s = clamped.qparams[0][0]
    assert (clamped(x) - want).abs().max() <= 36 * s / 2 * scale.max() + 1e-4


def test_first_and_last_adder_layers_stay_float():
    torch.manual_seed(0)
    model = nn.Sequential(addernet.AdderConv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          addernet.AdderConv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          addernet.AdderConv2d(4, 2, 3)).eval()
    calib = [torch.rand(4, 1, 9, 9)]
    q = quantize_adder(model, calib)
    assert q.quantized_layers == ["3"]
    assert len(quantize_adder(model, calib, keep_first_last=False).quantized_layers) == 3


@needs_native
def test_quantized_model_runs_under_torch_compile(trained_small):
    model, calib, xte, _ = trained_small
    q = quantize_adder(model, calib)
    with torch.no_grad():
        eager = q(xte[:16])
        compiled = torch.compile(q, fullgraph=True)(xte[:16])
    torch.testing.assert_close(compiled, eager)


def test_counts_and_bench_int8_column():
    from addernet.bench.counts import count_ops
    from addernet.bench.model_bench import bench_model
    from addernet.models import get_model

    # Convolutions at both ends, as this test's counts assume.
    model = get_model("lenet5_bn", kind="adder", first_layer="conv", last_layer="conv").eval()
    q = quantize_adder(model, [torch.randn(4, 1, 28, 28)])
    fc, qc = count_ops(model, (1, 1, 28, 28)), count_ops(q, (1, 1, 28, 28))
    assert qc.uncounted == []
    # the same taps, now integer: conv2, fc1, fc2 (the first and last layers are convolutions)
    assert qc.totals(("adder_int8",))["taps"] == fc.totals(("adder",))["taps"] > 0
    assert qc.totals(("adder",))["taps"] == 0
    epi = {r.name: r for r in qc.layers if r.type == "int8_epilogue"}
    assert set(epi) == {"conv2:epilogue", "fc1:epilogue", "fc2:epilogue"}
    # fc2 reads fc1's requantised bytes: scale, shift and ReLU only (84 outputs)
    assert (epi["fc2:epilogue"].mults, epi["fc2:epilogue"].cmps) == (84, 84)
    # The all-adder default keeps its first and last adder layers in float, fused: counted as adders.
    allq = quantize_adder(get_model("lenet5_bn", kind="adder").eval(), [torch.randn(4, 1, 28, 28)])
    ac = count_ops(allq, (1, 1, 28, 28))
    assert ac.uncounted == []
    assert {r.name for r in ac.layers if r.type == "adder"} == {"conv1", "fc3"}
    res = bench_model("lenet5_bn", latency=False)
    assert res["int8"]["quantized_layers"] == ["conv2", "fc1", "fc2"]
    assert res["int8"]["energy_uJ"] < res["counts"]["adder"]["energy_uJ"]


def test_default_mode_without_torchao_says_what_to_install(monkeypatch):
    import addernet.quant.pt2e as pt2e

    monkeypatch.setattr(pt2e, "pt2e_available", lambda: "torchao is not importable (test)")
    model = nn.Sequential(addernet.AdderConv2d(1, 2, 3), nn.BatchNorm2d(2)).eval()
    with pytest.raises(RuntimeError, match=r"torchao is not importable.*mode='adder'"):
        addernet.quantize(model, [torch.rand(2, 1, 5, 5)])
