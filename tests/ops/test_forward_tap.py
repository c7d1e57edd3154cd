"""The native CPU forward's two taps (ADDERNET_CPU_TAP, docs/numerics.md) against float64.

The identity tap computes sum|x - w| as sum x + sum w - 2 sum min(x, w). Its rounding error is
bounded by a multiple of u * S, S = sum(|x| + |w|) over an output's taps, where the exact tap's is
bounded by a multiple of u * sum|x - w|. Each test checks the bound derived in docs/numerics.md,
per output, on every ISA this CPU runs and both patch algorithms; and that inf, -inf and NaN
inputs give what |x - w| gives.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.adder_reference import adder_forward_backward
from test_op import _isas, needs_native

U = 2.0 ** -24  # float32's unit roundoff
ALGOS = ("packed", "direct")


def _paths(monkeypatch, algos=ALGOS):
    """Sets the environment for, and yields a name of, every forward path this CPU runs: each ISA,
    patch algorithm and identity width (the AVX-512 kernels have a 256- and a 512-bit one)."""
    for isa in _isas():
        monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
        for algo in algos:
            monkeypatch.setenv("ADDERNET_CPU_ALGO", algo)
            # forced, so that it runs at every K (the default takes the exact tap below 32 taps)
            for tap in ("identity256", "identity512") if isa == "avx512" else ("identity256",):
                monkeypatch.setenv("ADDERNET_CPU_TAP", tap)
                yield f"{isa}/{algo}/{tap}"


def _op(x, w, cfg):
    return torch.ops.addernet.adder_conv2d(x, w, list(cfg["stride"]), list(cfg["padding"]),
                                           list(cfg["dilation"]), cfg["groups"])


def _args(cfg):
    return cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]


def _reference(x, w, cfg):
    """(y, S, D): the float64 output -sum|x - w|, and per output S = sum(|x| + |w|) and
    D = sum|x - w| over its taps (a padded tap reads x = 0, so it adds |w| to both)."""
    stride, padding, dilation, groups = _args(cfg)
    xd, wd = x.double(), w.double()
    y = adder_forward_backward(xd, wd, None, stride, padding, dilation, groups)[0]
    sx = F.conv2d(xd.abs(), torch.ones_like(wd), None, stride, padding, dilation, groups)
    sw = wd.abs().sum((1, 2, 3)).view(1, -1, 1, 1)
    return y, sx + sw, -y


def identity_bound(S, K):
    # docs/numerics.md: |error| <= (3 (K - 1) + 5) u S to first order in u; (3K + 4) covers that
    # with room for the second-order terms.
    return (3 * K + 4) * U * S


def exact_bound(D, K):
    # Recursive summation of K roundings of |x - w|: gamma_K * sum|x - w| <= (K + 1) u D.
    return (K + 1) * U * D


def _inputs(cfg, dtype, layout, seed):
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w_ = cfg["n"], cfg["c"], cfg["h"], cfg["w"]
    if layout == "noncontiguous":
        x = torch.randn(n, c, h, 2 * w_, generator=gen)[..., ::2]
    else:
        x = torch.randn(n, c, h, w_, generator=gen)
    x = x.to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(cfg["o"], c // cfg["groups"], cfg["kh"], cfg["kw"], generator=gen).to(dtype)
    return x, w


def _cfg(n, c, h, w, o, kh, kw, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return dict(n=n, c=c, h=h, w=w, o=o, kh=kh, kw=kw, stride=stride, padding=padding,
                dilation=dilation, groups=groups)


# The odd-shape grid: tile edges mid-vector and mid-row, register blocks part-filled, K past one
# cache block (packed 256, direct 128 patch rows), strides, dilations, groups, non-square kernels,
# paddings wider than the kernel (outputs whose every tap is padding), batch 0.
GRID = {
    "odd": _cfg(3, 5, 13, 11, 13, 3, 3, padding=(1, 1)),
    "k_blocks": _cfg(1, 40, 6, 6, 7, 3, 3, padding=(1, 1)),
    "strided_1x1": _cfg(2, 8, 17, 17, 16, 1, 1, stride=(2, 2)),
    "depthwise": _cfg(2, 4, 5, 5, 4, 3, 3, padding=(1, 1), groups=4),
    "lenet_valid": _cfg(2, 6, 14, 14, 16, 5, 5),
    "dilated_groups": _cfg(2, 4, 23, 3, 6, 2, 3, padding=(2, 1), dilation=(2, 1), groups=2),
    "stride_2x3": _cfg(2, 3, 10, 9, 6, 3, 2, stride=(2, 3), padding=(1, 0), groups=3),
    "all_padding": _cfg(2, 3, 4, 5, 5, 3, 3, padding=(3, 4)),
    "one_position": _cfg(37, 6, 4, 4, 10, 4, 4),
    "batch0": _cfg(0, 3, 5, 5, 4, 3, 3, padding=(1, 1)),
}


def _check_identity(y, x, w, cfg, dtype, ctx):
    y_ref, S, _ = _reference(x, w, cfg)
    K = w.shape[1] * w.shape[2] * w.shape[3]
    tol = identity_bound(S, K)
    if dtype == torch.bfloat16:  # the float result, rounded once to bfloat16 (8 bits)
        tol = tol + 2.0 ** -8 * (y_ref.abs() + tol)
    assert y.shape == y_ref.shape and y.dtype == dtype, ctx
    err = (y.double() - y_ref).abs()
    assert bool((err <= tol).all()), f"{ctx}: worst error / bound {(err / tol).max().item():.3g}"


@needs_native
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", ["contiguous", "noncontiguous", "channels_last"])
@pytest.mark.parametrize("name", list(GRID))
def test_identity_tap_within_its_bound_on_the_odd_shape_grid(monkeypatch, name, layout, dtype):
    cfg = GRID[name]
    x, w = _inputs(cfg, dtype, layout, seed=len(name))
    for path in _paths(monkeypatch):
        _check_identity(_op(x, w, cfg), x, w, cfg, dtype, f"{name}/{layout}/{path}")


@needs_native
def test_identity_is_the_default_and_both_taps_agree(monkeypatch):
    cfg = GRID["odd"]
    x, w = _inputs(cfg, torch.float32, "contiguous", seed=1)
    monkeypatch.delenv("ADDERNET_CPU_TAP", raising=False)
    default = _op(x, w, cfg)  # K = 45 taps: the identity, at the width this CPU prefers
    bits = torch.ops.addernet._cpu_info().split("identity_bits=")[1].split()[0]
    monkeypatch.setenv("ADDERNET_CPU_TAP", "identity")
    assert torch.equal(default, _op(x, w, cfg))
    monkeypatch.setenv("ADDERNET_CPU_TAP", f"identity{bits}")
    assert torch.equal(default, _op(x, w, cfg))
    monkeypatch.setenv("ADDERNET_CPU_TAP", "exact")
    exact = _op(x, w, cfg)
    assert not torch.equal(default, exact)  # two different roundings ran
    torch.testing.assert_close(default, exact, rtol=0, atol=1e-4)
    info = torch.ops.addernet._cpu_info()
    assert "tap=exact" in info and "identity_bits=" in info


@needs_native
def test_exact_tap_is_kept_for_inputs_far_from_zero_and_close_to_the_weights(monkeypatch):
    """Where x and w share a large offset, sum|x - w| is small against S: the identity loses
    digits (its bound is in units of S), the exact tap keeps them. This is why the exact tap
    stays selectable."""
    cfg = GRID["k_blocks"]
    gen = torch.Generator().manual_seed(7)
    x = 1000.0 + 1e-3 * torch.randn(cfg["n"], cfg["c"], cfg["h"], cfg["w"], generator=gen)
    w = 1000.0 + 1e-3 * torch.randn(cfg["o"], cfg["c"], cfg["kh"], cfg["kw"], generator=gen)
    cfg = dict(cfg, padding=(0, 0))  # padded taps would add |w| ~ 1000 to sum|x - w|
    y_ref, S, D = _reference(x, w, cfg)
    K = cfg["c"] * cfg["kh"] * cfg["kw"]
    for path in _paths(monkeypatch):
        err_id = (_op(x, w, cfg).double() - y_ref).abs()
        assert bool((err_id <= identity_bound(S, K)).all()), path
        # The identity's error is real here: past what the exact tap's bound allows.
        assert bool((err_id > exact_bound(D, K)).any()), path
        monkeypatch.setenv("ADDERNET_CPU_TAP", "exact")
        err_exact = (_op(x, w, cfg).double() - y_ref).abs()
        assert bool((err_exact <= exact_bound(D, K)).all()), path


# -- inf, -inf, NaN and overflow --------------------------------------------------------------------

SPECIAL_SHAPES = {
    "lenet": _cfg(2, 6, 14, 14, 16, 5, 5),
    "same3x3": _cfg(2, 16, 8, 8, 16, 3, 3, padding=(1, 1)),
    "strided": _cfg(2, 5, 9, 9, 7, 3, 3, stride=(2, 2), padding=(1, 1)),
    "dilated": _cfg(1, 3, 5, 9, 4, 2, 2, dilation=(4, 4)),
}
SPECIAL_VALUES = [("x", math.inf), ("x", -math.inf), ("x", math.nan), ("w", math.inf),
                  ("w", -math.inf), ("w", math.nan), ("x", 3e38), ("w", -3e38)]


def _check_special(y, x, w, cfg, ctx):
    y_ref, S, _ = _reference(x, w, cfg)
    want = y_ref.float().double()  # float32's overflow: past 3.4e38 is -inf
    assert torch.equal(y.isnan(), want.isnan()), ctx
    assert torch.equal(y.isinf(), want.isinf()), ctx
    inf = want.isinf()
    assert torch.equal(y.double()[inf], want[inf]), ctx  # same sign
    fin = want.isfinite()
    K = w.shape[1] * w.shape[2] * w.shape[3]
    err = (y.double()[fin] - y_ref[fin]).abs()
    assert bool((err <= identity_bound(S[fin], K)).all()), ctx


@needs_native
@pytest.mark.parametrize("where, value", SPECIAL_VALUES, ids=[f"{a}={b}" for a, b in SPECIAL_VALUES])
@pytest.mark.parametrize("name", list(SPECIAL_SHAPES))
def test_non_finite_inputs_give_what_the_exact_tap_gives(monkeypatch, name, where, value):
    cfg = SPECIAL_SHAPES[name]
    x, w = _inputs(cfg, torch.float32, "contiguous", seed=3)
    target = x if where == "x" else w
    target.view(-1)[target.numel() // 3] = value
    if where == "x":
        x[0, 0, 2, 1] = value  # a second one, in a row the dilated case never reads
    for path in _paths(monkeypatch):
        _check_special(_op(x, w, cfg), x, w, cfg, f"{name}/{where}={value}/{path}")


@needs_native
def test_infinite_partial_sums_fall_back_to_the_exact_tap(monkeypatch):
    """x = w = (2e38, 2e38, -2e38, -2e38, ...): every |x - w| is 0, but sum x overflows on the
    way (4e38), and with it the identity's result; the tile must be recomputed exactly: y = 0."""
    cfg = _cfg(3, 32, 5, 6, 9, 1, 1)
    pattern = torch.tensor([2e38, 2e38, -2e38, -2e38]).repeat(8)
    x = pattern.view(1, 32, 1, 1).expand(3, 32, 5, 6).contiguous()
    w = pattern.view(1, 32, 1, 1).expand(9, 32, 1, 1).contiguous()
    for path in _paths(monkeypatch):
        assert torch.equal(_op(x, w, cfg), torch.zeros(3, 9, 5, 6)), path


@needs_native
def test_a_nan_tile_leaves_the_other_images_on_the_identity_tap(monkeypatch):
    """The fallback is per tile: image 1 is unaffected by image 0's NaN, bit for bit the same as
    without it."""
    cfg = _cfg(2, 16, 8, 8, 16, 3, 3, padding=(1, 1))
    x, w = _inputs(cfg, torch.float32, "contiguous", seed=5)
    for path in _paths(monkeypatch, algos=("direct",)):  # direct tiles are rows of one image
        clean = _op(x, w, cfg)
        xn = x.clone()
        xn[0, 3, 4, 4] = math.nan
        dirty = _op(xn, w, cfg)
        assert torch.equal(dirty[1], clean[1]), path
        assert bool(dirty[0].isnan().any()), path


@needs_native
def test_few_taps_per_output_keep_the_exact_tap_by_default(monkeypatch):
    """Below 32 taps an output's identity finish costs what its taps save: `identity` runs the
    exact tap there (bit for bit), and still the identity from 32 taps up."""
    gen = torch.Generator().manual_seed(11)
    for c, identity_runs in ((31, False), (32, True)):
        cfg = _cfg(2, c, 6, 6, 8, 1, 1)
        x = torch.randn(2, c, 6, 6, generator=gen)
        w = torch.randn(8, c, 1, 1, generator=gen)
        monkeypatch.setenv("ADDERNET_CPU_TAP", "identity")
        default = _op(x, w, cfg)
        monkeypatch.setenv("ADDERNET_CPU_TAP", "exact")
        assert torch.equal(default, _op(x, w, cfg)) != identity_runs, c
