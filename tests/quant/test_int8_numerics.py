"""Numerics of the int8 path (issue 25 part 3): non-finite input is refused at the quantise boundary
on every kernel set and in the reference, calibration sets with no images or a NaN/inf are clear
errors, and zero points at either end of the range stay bit-exact."""
import pytest
import torch

import addernet
from addernet.backends.native.extension import native_available
from addernet.backends.reference import adder_conv2d_u8 as reference_u8
from addernet.nn import QuantAdderConv2d
from addernet.quant import quantize_tensor, shared_qparams
from addernet.quant.pt2e import pt2e_available

from helpers.int8 import int_reference, kernel_sets as _kernel_sets, needs_native

BAD = [float("nan"), float("inf"), float("-inf")]
needs_pt2e = pytest.mark.skipif(pt2e_available() is not None, reason=str(pt2e_available()))
CONF = [[1, 1], [1, 1], [1, 1], 1]


def _poisoned(shape, where, value, seed=0):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    x.view(-1)[where] = value
    return x


@needs_native
@pytest.mark.parametrize("isa, vec", _kernel_sets())
@pytest.mark.parametrize("value", BAD)
# 2x5x7x7: 49-value planes, so the bad value sits in the 16-wide vector loop (0, 100) or its scalar tail
# (48, 243); 3 channels of 4x3: 12-value planes, the scalar loop only.
@pytest.mark.parametrize("shape, where", [((2, 5, 7, 7), 0), ((2, 5, 7, 7), 100), ((2, 5, 7, 7), 48),
                                          ((2, 5, 7, 7), 243), ((1, 3, 4, 3), 7)])
@pytest.mark.parametrize("threads", [1, 2])
def test_non_finite_input_is_refused_by_every_kernel_set(monkeypatch, isa, vec, value, shape, where, threads):
    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    monkeypatch.setenv("ADDERNET_U8_VECTOR", vec)
    x = _poisoned(shape, where, value)
    w = torch.randint(0, 256, (4, shape[1], 3, 3), dtype=torch.uint8)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with pytest.raises(ValueError, match="NaN or inf"):
            torch.ops.addernet.adder_conv2d_u8(x, w, 7, None, None, *CONF, input_scale=0.01)
        # the same input made finite runs (the check is not a false alarm)
        x.view(-1)[where] = 0.5
        y = torch.ops.addernet.adder_conv2d_u8(x, w, 7, None, None, *CONF, input_scale=0.01)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(y.long(), int_reference(quantize_tensor(x, 0.01, 7), w, 7, *CONF))


@pytest.mark.parametrize("value", BAD)
def test_reference_op_refuses_non_finite_input(value):
    # It used to cast NaN to int64 (INT64_MIN) and return a wrapped, wrong-signed sum.
    x = _poisoned((1, 2, 5, 5), 3, value)
    w = torch.randint(0, 256, (3, 2, 3, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="NaN or inf"):
        reference_u8(x, w, 7, None, None, *CONF, input_scale=0.01)
    with pytest.raises(ValueError, match="NaN or inf"):
        quantize_tensor(x, 0.01, 7)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        addernet.AdderConv2d(4, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        addernet.AdderConv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 3)).eval()


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("mode", ["adder", pytest.param("pt2e", marks=needs_pt2e)])
def test_quantized_model_never_gives_a_finite_answer_from_non_finite_input(value, mode):
    q = addernet.quantize(_model(), [torch.rand(4, 1, 8, 8)], mode=mode)
    assert q.quantized_layers == ["3", "6"]
    x = torch.rand(2, 1, 8, 8)
    x[1, 0, 4, 4] = value
    with torch.no_grad(), pytest.raises(ValueError, match="NaN or inf"):
        q(x)


@pytest.mark.parametrize("bad, match", [
    ([torch.rand(0, 1, 8, 8)], "batch 0 has no images"),
    ([torch.rand(2, 1, 8, 8), torch.rand(0, 1, 8, 8)], "batch 1 has no images"),
    ([_poisoned((2, 1, 8, 8), 5, float("nan"))], "batch 0 holds NaN or inf"),
    ([torch.rand(2, 1, 8, 8), (_poisoned((2, 1, 8, 8), 5, float("inf")), torch.zeros(2))], "batch 1 holds NaN or inf"),
    ([[]], "batch 0 has no images"),
])
def test_bad_calibration_sets_are_clear_errors(bad, match):
    # An empty batch used to end in torch.quantile's "input tensor must be non-empty".
    with pytest.raises(ValueError, match=match):
        addernet.quantize(_model(), bad)


def test_non_finite_weights_are_refused():
    w = torch.randn(4, 2, 3, 3)
    w[1, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight holds NaN"):
        QuantAdderConv2d(w, torch.ones(4), torch.zeros(4), False, (1, 1), (1, 1), (1, 1), 1, (0.0, 1.0))


def test_zero_point_at_either_end_of_the_range():
    assert shared_qparams(0.0, 3.0)[1] == 0  # all non-negative (after a ReLU)
    assert shared_qparams(-3.0, 0.0)[1] == 255  # all non-positive
    assert shared_qparams(1.0, 3.0)[1] == 0 and shared_qparams(-3.0, -1.0)[1] == 255  # widened to hold 0


@needs_native
@pytest.mark.parametrize("isa, vec", _kernel_sets())
@pytest.mark.parametrize("zp", [0, 255])
def test_kernels_bit_exact_with_zero_point_at_either_end(monkeypatch, isa, vec, zp):
    # Padded taps hold the zero point: at 0 or 255 they are the extreme bytes, |qx - qw| up to 255.
    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    monkeypatch.setenv("ADDERNET_U8_VECTOR", vec)
    g = torch.Generator().manual_seed(zp)
    for c, k, pad in ((16, 3, 1), (6, 5, 2), (32, 1, 0)):
        x = torch.randint(0, 256, (2, c, 9, 9), dtype=torch.uint8, generator=g)
        w = torch.randint(0, 256, (8, c, k, k), dtype=torch.uint8, generator=g)
        conf = [[1, 1], [pad, pad], [1, 1], 1]
        ref = int_reference(x, w, zp, *conf)
        assert torch.equal(torch.ops.addernet.adder_conv2d_u8(x, w, zp, None, None, *conf).long(), ref)
        # requantising onto a grid whose zero point is at either end: the values straddle 0 by a few
        # hundred output steps, so the clamp at the zero point's end and the inside of the range are hit
        acc = ref.double()
        scale = torch.full((8,), 1e-3)
        shift = (acc.median() * -1e-3).float().expand(8).contiguous()
        out_scale = float(1e-3 * (acc.max() - acc.min()) / 600)
        for out_zp in (0, 255):
            got = torch.ops.addernet.adder_conv2d_u8(x, w, zp, scale, shift, *conf, False, out_scale, out_zp)
            want = reference_u8(x, w, zp, scale, shift, *conf, False, out_scale, out_zp)
            assert (got.long() - want.long()).abs().max() <= 1  # an ulp at a rounding tie
            assert (got == want).double().mean() > 0.99
            # values below the median go past the zero point's end when it is 0, those above when it is 255
            assert (got == out_zp).any() and ((got > 0) & (got < 255)).any()


@pytest.mark.parametrize("lo, hi", [(0.0, 2.0), (-2.0, 0.0)])
def test_layer_on_one_sided_ranges_matches_float(lo, hi):
    # An input range on one side of 0 puts the zero point at 0 or 255; the layer still computes the
    # float adder up to the grid's rounding.
    torch.manual_seed(1)
    w = torch.rand(5, 3, 3, 3) * (hi - lo) + lo
    x = torch.rand(2, 3, 6, 6) * (hi - lo) + lo
    q = QuantAdderConv2d(w, torch.ones(5), torch.zeros(5), False, (1, 1), (1, 1), (1, 1), 1, (lo, hi))
    assert q.qparams[0][1] == (0 if lo == 0 else 255)
    want = addernet.functional.adder_conv2d(x, w, backend="reference", padding=1)
    s = q.qparams[0][0]
    err = (q(x) - want).abs().max().item()
    assert err <= 27 * s + 1e-5  # each of 27 taps off by at most s (x and w each s/2)
