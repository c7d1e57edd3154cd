"""The adder op of every CPU backend against the independent float64 formulas."""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import addernet
from addernet import functional as AF
from helpers.adder_reference import adder_forward_backward

CPU_BACKENDS = [b for b in ("native", "reference") if b in addernet.backends.available()]
NATIVE = "native" in addernet.backends.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")


def _isas():
    if not NATIVE:
        return []
    info = torch.ops.addernet._cpu_info()
    return info.split("supported=")[1].split()[0].split(",")


@st.composite
def conv_configs(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 4))
    og = draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    min_h = dilation[0] * (kh - 1) + 1 - 2 * padding[0]
    min_w = dilation[1] * (kw - 1) + 1 - 2 * padding[1]
    h = draw(st.integers(max(1, min_h), max(1, min_h) + 9))
    w = draw(st.integers(max(1, min_w), max(1, min_w) + 9))
    n = draw(st.integers(0, 3))
    return dict(n=n, c=cg * groups, h=h, w=w, o=og * groups, kh=kh, kw=kw, stride=stride,
                padding=padding, dilation=dilation, groups=groups)


def _inputs(cfg, dtype, layout="contiguous"):
    x = torch.randn(cfg["n"], cfg["c"], cfg["h"], cfg["w"], dtype=dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "noncontiguous":
        x = torch.randn(cfg["n"], cfg["c"], cfg["h"], 2 * cfg["w"], dtype=dtype)[..., ::2]
    wt = torch.randn(cfg["o"], cfg["c"] // cfg["groups"], cfg["kh"], cfg["kw"], dtype=dtype)
    return x, wt


def _check_against_formulas(cfg, backend, dtype, layout="contiguous", bias=False):
    x, w = _inputs(cfg, dtype, layout)
    x.requires_grad_()
    w.requires_grad_()
    b = torch.randn(cfg["o"], dtype=dtype, requires_grad=True) if bias else None
    y = AF.adder_conv2d(x, w, b, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"], backend=backend)
    g = torch.randn_like(y)
    y_ref, gx_ref, gw_ref = adder_forward_backward(
        x.detach(), w.detach(), g, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])
    if bias:
        y_ref = y_ref + b.detach().double().view(1, -1, 1, 1)
    grads = torch.autograd.grad(y, (x, w) + ((b,) if bias else ()), g)
    rtol = 1e-5 if dtype == torch.float32 else 1e-10
    scale = lambda t: max(1.0, t.abs().max().item()) if t.numel() else 1.0  # noqa: E731
    assert y.shape == y_ref.shape and y.dtype == dtype
    torch.testing.assert_close(y.double(), y_ref, rtol=0, atol=rtol * scale(y_ref))
    torch.testing.assert_close(grads[0].double(), gx_ref, rtol=0, atol=rtol * scale(gx_ref))
    torch.testing.assert_close(grads[1].double(), gw_ref, rtol=0, atol=rtol * scale(gw_ref) * 4)
    if bias:
        torch.testing.assert_close(grads[2].double(), g.double().sum((0, 2, 3)))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs())
def test_matches_formulas_on_random_configs(backend, dtype, cfg):
    _check_against_formulas(cfg, backend, dtype)


BASE = dict(n=2, c=6, h=9, w=7, o=4, kh=3, kw=2, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("layout", ["channels_last", "noncontiguous"])
def test_memory_layouts(backend, layout):
    _check_against_formulas(BASE, backend, torch.float32, layout=layout)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_bias_and_batch_zero(backend):
    _check_against_formulas(BASE, backend, torch.float64, bias=True)
    _check_against_formulas(dict(BASE, n=0), backend, torch.float32, bias=True)


@needs_native
@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize(
    "cfg",
    [
        # odd sizes around every tile edge: positions not a multiple of the vector width,
        # output channels not a multiple of the register block, K past one cache block
        dict(n=3, c=5, h=13, w=11, o=13, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
        dict(n=1, c=40, h=6, w=6, o=7, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
        dict(n=2, c=8, h=17, w=17, o=16, kh=1, kw=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
        dict(n=2, c=4, h=5, w=5, o=4, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=4),
    ],
)
def test_every_isa_path(monkeypatch, isa, cfg):
    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    for dtype in (torch.float32, torch.float64):
        _check_against_formulas(cfg, "native", dtype)


# Shapes for the two ways the native kernels reach patches. The direct path tiles whole output
# (forward) or input (input gradient) rows, so these put tile ends mid-row and mid-vector, run
# 'valid' layers whose border pixels see few taps, and mix stride 1 (direct input gradient) with
# strides that keep the packed one.
ALGO_CFGS = [
    dict(n=3, c=5, h=13, w=11, o=13, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=2, c=6, h=14, w=14, o=16, kh=5, kw=5, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=1, c=40, h=7, w=7, o=7, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=2, c=4, h=23, w=3, o=6, kh=2, kw=3, stride=(1, 1), padding=(2, 1), dilation=(2, 1), groups=2),
    dict(n=2, c=8, h=17, w=17, o=16, kh=1, kw=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=2, c=3, h=10, w=9, o=6, kh=3, kw=2, stride=(2, 3), padding=(1, 0), dilation=(1, 1), groups=3),
    dict(n=4, c=3, h=40, w=33, o=2, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
]


@needs_native
@pytest.mark.parametrize("algo", ["packed", "direct"])
@pytest.mark.parametrize("cfg", ALGO_CFGS)
def test_every_algorithm(monkeypatch, algo, cfg):
    monkeypatch.setenv("ADDERNET_CPU_ALGO", algo)
    for isa in _isas():
        monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
        for dtype in (torch.float32, torch.float64):
            _check_against_formulas(cfg, "native", dtype)


@needs_native
@pytest.mark.parametrize("algo", ["packed", "direct"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs())
def test_every_algorithm_on_random_configs(algo, cfg):
    old = os.environ.get("ADDERNET_CPU_ALGO")
    os.environ["ADDERNET_CPU_ALGO"] = algo
    try:
        _check_against_formulas(cfg, "native", torch.float32)
    finally:
        if old is None:
            del os.environ["ADDERNET_CPU_ALGO"]
        else:
            os.environ["ADDERNET_CPU_ALGO"] = old


@needs_native
@pytest.mark.parametrize("algo", ["packed", "direct"])
def test_fused_epilogue_in_every_algorithm(monkeypatch, algo):
    monkeypatch.setenv("ADDERNET_CPU_ALGO", algo)
    cfg = ALGO_CFGS[0]
    x, w = _inputs(cfg, torch.float32)
    scale, shift = torch.randn(cfg["o"]), torch.randn(cfg["o"])
    args = (list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"])
    got = torch.ops.addernet.adder_conv2d_fused(x, w, scale, shift, *args, True)
    y_ref = adder_forward_backward(x, w, None, cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"])[0]
    want = torch.relu(y_ref * scale.double().view(1, -1, 1, 1) + shift.double().view(1, -1, 1, 1))
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5 * want.abs().max().item())


@needs_native
@pytest.mark.parametrize("algo", ["packed", "direct"])
def test_small_batches_split_channels_across_threads(monkeypatch, algo):
    # One image gives one tile of positions; with 8 threads the kernels split its 197 output (and
    # 130 input) channels into chunks so that every thread has work. Results must not change.
    monkeypatch.setenv("ADDERNET_CPU_ALGO", algo)
    threads = torch.get_num_threads()
    torch.set_num_threads(8)
    try:
        cfg = dict(n=1, c=130, h=5, w=5, o=197, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        _check_against_formulas(cfg, "native", torch.float32)
    finally:
        torch.set_num_threads(threads)


@needs_native
def test_algorithm_choice_follows_the_layer_shape(monkeypatch):
    algos = lambda n, c, h, o, k, stride, pad: torch.ops.addernet._cpu_algorithms(  # noqa: E731
        [n, c, h, h], [o, c, k, k], [stride] * 2, [pad] * 2, [1, 1], 1)
    assert algos(32, 16, 32, 16, 3, 1, 1) == "direct/direct"    # wide rows: read in place
    assert algos(32, 16, 32, 32, 3, 2, 1).endswith("/packed")   # strided input gradient packs
    assert algos(256, 16, 5, 120, 5, 1, 0) == "packed/packed"   # one position per image
    monkeypatch.setenv("ADDERNET_CPU_ALGO", "packed")
    assert algos(32, 16, 32, 16, 3, 1, 1) == "packed/packed"
    monkeypatch.setenv("ADDERNET_CPU_ALGO", "direct")
    assert algos(32, 16, 32, 32, 3, 2, 1) == "direct/packed"


@needs_native
@pytest.mark.parametrize("var, value", [("ADDERNET_CPU_ISA", "sse9"), ("ADDERNET_CPU_ALGO", "winograd"),
                                        ("ADDERNET_CPU_TAP", "fast")])
def test_unknown_kernel_choice_is_a_clear_error(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    x, w = _inputs(BASE, torch.float32)
    with pytest.raises(RuntimeError, match=var):
        AF.adder_conv2d(x, w, groups=BASE["groups"], backend="native")


@needs_native
def test_bfloat16_accumulates_in_float32():
    cfg = dict(BASE, c=32, o=8, groups=1)
    x, w = _inputs(cfg, torch.bfloat16)
    x.requires_grad_()
    w.requires_grad_()
    y = AF.adder_conv2d(x, w, None, cfg["stride"], cfg["padding"], cfg["dilation"], backend="native")
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    y_ref, gx_ref, gw_ref = adder_forward_backward(x.detach(), w.detach(), g, cfg["stride"], cfg["padding"],
                                                   cfg["dilation"], 1)
    # One bf16 rounding of the result (8 bits of mantissa), not one per accumulated tap.
    for got, ref in ((y, y_ref), (gx, gx_ref), (gw, gw_ref)):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.double(), ref, rtol=2 ** -7, atol=2 ** -7 * ref.abs().max().item() / 8)
