"""The op at the edges of its domain: empty channels, huge strides and paddings, NaN and inf, meta
tensors, and the per-thread backend choice. Each test is a regression test of a reported crash or
silent wrong answer (issue 17)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
import torch.nn.functional as F

import addernet
from addernet import functional as AF

NATIVE = "native" in addernet.backends.available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")
CPU_BACKENDS = [b for b in ("native", "reference") if b in addernet.backends.available()]


def _isas():
    if not NATIVE:
        return []
    return torch.ops.addernet._cpu_info().split("supported=")[1].split()[0].split(",")


def _run_isolated(code: str) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter, so that a crash (SIGFPE, SIGSEGV) fails the test instead
    of killing pytest."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)


# -- zero channels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", addernet.backends.available())
@pytest.mark.parametrize("stride, padding", [(1, 0), (1, 1), (2, 1)])
def test_zero_input_channels_give_what_conv2d_gives(backend, stride, padding):
    x = torch.randn(2, 0, 8, 8, requires_grad=True)
    w = torch.randn(6, 0, 3, 3, requires_grad=True)
    b = torch.randn(6)
    y = AF.adder_conv2d(x, w, b, stride, padding, backend=backend)
    ref = F.conv2d(x, w, b, stride, padding)
    assert y.shape == ref.shape == (2, 0) + ref.shape[2:]  # conv2d's (N, 0, OH, OW), bias unused
    gx, gw = torch.autograd.grad(y.sum(), (x, w), allow_unused=True)
    rx, rw = torch.autograd.grad(ref.sum(), (x, w), allow_unused=True)
    for ours, theirs in ((gx, rx), (gw, rw)):
        assert (ours is None) == (theirs is None) or ours.numel() == 0
        if ours is not None and theirs is not None:
            assert ours.shape == theirs.shape


@needs_native
def test_zero_input_channels_fused_and_meta_shapes():
    scale, shift = torch.ones(4), torch.tensor([-2.0, -1.0, 0.5, 1.0])
    y = torch.ops.addernet.adder_conv2d_fused(torch.randn(2, 0, 5, 5), torch.randn(4, 0, 3, 3), scale, shift,
                                             [1, 1], [0, 0], [1, 1], 1, True)
    assert y.shape == (2, 0, 3, 3)
    m = torch.ops.addernet.adder_conv2d(torch.randn(2, 0, 5, 5, device="meta"), torch.randn(4, 0, 3, 3, device="meta"),
                                        [1, 1], [0, 0], [1, 1], 1)
    assert m.shape == (2, 0, 3, 3)


@pytest.mark.parametrize("backend", addernet.backends.available())
def test_zero_output_channels_refused_like_conv2d(backend):
    x, w = torch.randn(2, 3, 8, 8), torch.randn(0, 3, 3, 3)
    with pytest.raises(RuntimeError):
        F.conv2d(x, w)
    with pytest.raises(ValueError, match="no output channels"):
        AF.adder_conv2d(x, w, backend=backend)


@needs_native
def test_zero_channels_do_not_crash_the_native_op():
    # In a subprocess: this used to be SIGFPE (a division by the channel count in the kernel sizing).
    r = _run_isolated("""
        import torch, addernet
        op = torch.ops.addernet
        for isa in %r:
            import os; os.environ["ADDERNET_CPU_ISA"] = isa
            for algo in ("packed", "direct"):
                os.environ["ADDERNET_CPU_ALGO"] = algo
                y = op.adder_conv2d(torch.randn(2, 0, 8, 8), torch.randn(6, 0, 3, 3), [1, 1], [1, 1], [1, 1], 1)
                assert y.shape == (2, 0, 8, 8)
                gi, gw = op.adder_conv2d_backward(torch.randn(2, 0, 8, 8), torch.randn(2, 0, 8, 8),
                                                  torch.randn(6, 0, 3, 3), [1, 1], [1, 1], [1, 1], 1, [True, True])
                assert gi.shape == (2, 0, 8, 8) and gw.shape == (6, 0, 3, 3)
                try:
                    op.adder_conv2d_backward(torch.randn(2, 0, 8, 8), torch.randn(2, 3, 8, 8),
                                             torch.randn(0, 3, 3, 3), [1, 1], [1, 1], [1, 1], 1, [True, True])
                except RuntimeError as e:
                    assert "no output channels" in str(e), e
                else:
                    raise AssertionError("zero output channels accepted")
        print("ok")
    """ % (_isas(),))
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-2000:])


# -- huge strides, paddings ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_huge_stride_costs_no_more_than_a_small_one(backend):
    x = torch.randn(1, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    for stride in [(2**31, 1), (10**12, 1), (1, 2**62)]:
        t0 = time.perf_counter()
        y = AF.adder_conv2d(x, w, None, stride, 1, backend=backend)
        gx, gw = torch.autograd.grad(y.sum(), (x, w))
        elapsed = time.perf_counter() - t0
        small = AF.adder_conv2d(x, w, None, tuple(min(s, 100) for s in stride), 1, backend="reference")
        torch.testing.assert_close(y, small)  # a stride past the input keeps the first row/column only
        assert elapsed < 5, f"stride {stride} took {elapsed:.1f} s"


@pytest.mark.parametrize("padding, dilation", [((2**62, 1), 1), ((1, 2**63 - 5), 1), (1, (2**62, 1))])
def test_size_arithmetic_overflow_is_a_clear_error(padding, dilation):
    x, w = torch.randn(1, 2, 9, 9), torch.randn(3, 2, 3, 3)
    for backend in CPU_BACKENDS:
        with pytest.raises(ValueError, match="overflows 64-bit size arithmetic"):
            AF.adder_conv2d(x, w, None, 1, padding, dilation, backend=backend)
    if NATIVE:
        p, d = addernet._validation.pair(padding, "p"), addernet._validation.pair(dilation, "d")
        with pytest.raises(RuntimeError, match="overflows 64-bit size arithmetic"):
            torch.ops.addernet.adder_conv2d(x, w, [1, 1], list(p), list(d), 1)
        with pytest.raises(RuntimeError, match="overflows 64-bit size arithmetic"):
            torch.ops.addernet.adder_conv2d(x.to("meta"), w.to("meta"), [1, 1], list(p), list(d), 1)


def test_stride_past_int64_is_a_clear_error():
    with pytest.raises(ValueError, match="does not fit in a 64-bit integer"):
        AF.adder_conv2d(torch.randn(1, 2, 9, 9), torch.randn(3, 2, 3, 3), None, (2**64, 1), backend="reference")


# -- NaN and inf in the input gradient -------------------------------------------------------------

def _nan_inf_cases():
    # (name, input shape, weight shape, stride, padding, dilation, where the special value goes)
    shapes = [
        ("lenet", (2, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
        ("same3x3", (2, 16, 8, 8), (16, 16, 3, 3), 1, 1, 1),
        ("strided", (2, 5, 9, 9), (7, 5, 3, 3), 2, 1, 1),
        ("dilated", (1, 3, 5, 9), (4, 3, 2, 2), 1, 0, 4),  # rows 1-3 are read by no output
    ]
    values = [("w_nan", "w", float("nan")), ("x_inf", "x", float("inf")), ("x_-inf", "x", float("-inf")),
              ("x_nan", "x", float("nan")), ("x_big", "x", 3e6), ("w_inf", "w", float("inf")),
              ("g_inf", "g", float("inf")), ("g_nan", "g", float("nan"))]
    return [(s, v) for s in shapes for v in values]


def _with_special_value(xs, ws, stride, padding, dilation, where, value, *, seed, dtype=torch.float32):
    """Random x, w and an upstream g with ``value`` in ``where`` (x also in a row the dilated case never reads)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(xs, generator=gen, dtype=dtype)
    w = torch.randn(ws, generator=gen, dtype=dtype)
    g = torch.randn(F.conv2d(x, w, None, stride, padding, dilation).shape, generator=gen, dtype=dtype)
    target = {"x": x, "w": w, "g": g}[where]
    target.view(-1)[target.numel() // 3] = value
    if where == "x":
        x[0, 0, 2, 1] = value
    return x, w, g


@needs_native
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape, special", _nan_inf_cases(), ids=lambda c: c[0])
def test_nan_and_inf_input_gradient_matches_the_reference(monkeypatch, dtype, shape, special):
    _, xs, ws, stride, padding, dilation = shape
    _, where, value = special
    x, w, g = _with_special_value(xs, ws, stride, padding, dilation, where, value, seed=0, dtype=dtype)
    args = ([stride] * 2, [padding] * 2, [dilation] * 2, 1)
    from addernet.backends import reference
    ref_gx, _ = reference.backward(g.double(), x.double(), w.double(), *args[:3], 1)
    for isa in _isas():
        monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
        for algo in ("packed", "direct"):
            monkeypatch.setenv("ADDERNET_CPU_ALGO", algo)
            gx, _ = torch.ops.addernet.adder_conv2d_backward(g, x, w, *args, [True, False])
            ctx = f"{isa}/{algo}"
            assert torch.equal(gx.isnan(), ref_gx.isnan()), ctx
            assert torch.equal(gx.isinf(), ref_gx.isinf()), ctx
            tol = 1e-9 if dtype == torch.float64 else 2e-4
            torch.testing.assert_close(gx.double(), ref_gx, rtol=tol, atol=tol, equal_nan=True, msg=ctx)


# -- fake kernels check what eager checks ----------------------------------------------------------

_BAD_CALLS = [
    # (input shape, weight shape, stride, padding, dilation, groups, expected message)
    ((2, 3, 8, 8), (4, 2, 3, 3), [1, 1], [0, 0], [1, 1], 1, "has 3 channels but weight"),
    ((2, 3, 8, 8), (4, 3, 3, 3), [0, 1], [0, 0], [1, 1], 1, "stride must be positive"),
    ((2, 3, 8, 8), (4, 3, 3, 3), [1, 1], [-1, 0], [1, 1], 1, "padding must be non-negative"),
    ((2, 3, 8, 8), (4, 3, 3, 3), [1, 1], [0, 0], [0, 1], 1, "dilation must be positive"),
    ((2, 4, 8, 8), (4, 2, 3, 3), [1, 1], [0, 0], [1, 1], 3, "must divide"),
    ((2, 3, 8, 8), (4, 3, 3, 3), [1, 1], [0, 0], [1, 1], 0, "groups must be positive"),
    ((2, 3, 2, 2), (4, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1, "output size would be"),
    ((2, 3, 8), (4, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1, "4-D input"),
    ((2, 3, 8, 8), (0, 3, 3, 3), [1, 1], [0, 0], [1, 1], 1, "no output channels"),
]


def _eager_error(x, w, *args):
    try:
        torch.ops.addernet.adder_conv2d(x, w, *args)
    except RuntimeError as e:
        return str(e).splitlines()[0]
    raise AssertionError("eager accepted a bad call")


@needs_native
@pytest.mark.parametrize("xs, ws, stride, padding, dilation, groups, message", _BAD_CALLS)
def test_meta_tensors_refuse_what_eager_refuses(xs, ws, stride, padding, dilation, groups, message):
    x, w = torch.randn(xs), torch.randn(ws)
    eager = _eager_error(x, w, stride, padding, dilation, groups)
    assert message in eager
    with pytest.raises(RuntimeError) as info:
        torch.ops.addernet.adder_conv2d(x.to("meta"), w.to("meta"), stride, padding, dilation, groups)
    assert str(info.value).splitlines()[0] == eager


@needs_native
def test_meta_backward_and_fused_check_their_extra_arguments():
    x, w = torch.randn(2, 3, 8, 8, device="meta"), torch.randn(4, 3, 3, 3, device="meta")
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        torch.ops.addernet.adder_conv2d_backward(torch.randn(2, 4, 5, 5, device="meta"), x, w, [1, 1], [0, 0],
                                                 [1, 1], 1, [True, True])
    with pytest.raises(RuntimeError, match="scale must have shape"):
        torch.ops.addernet.adder_conv2d_fused(x, w, torch.randn(3, device="meta"), None, [1, 1], [0, 0], [1, 1],
                                              1, False)
    with pytest.raises(RuntimeError, match="input dtype Float and weight dtype Double differ"):
        torch.ops.addernet.adder_conv2d(x, w.double(), [1, 1], [0, 0], [1, 1], 1)


@needs_native
def test_compiled_op_gives_the_eager_error():
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 2, 3, 3)
    eager = _eager_error(x, w, [1, 1], [0, 0], [1, 1], 1)

    def f(x, w):
        return torch.ops.addernet.adder_conv2d(x, w, [1, 1], [0, 0], [1, 1], 1)

    torch._dynamo.reset()
    with pytest.raises(Exception) as info:
        torch.compile(f, fullgraph=True, backend="eager")(x, w)
    assert eager in str(info.value)


# -- use_backend is per thread ---------------------------------------------------------------------

def test_use_backend_is_thread_local():
    other = "reference"
    seen = {}
    inside, done = threading.Event(), threading.Event()

    def worker():
        inside.wait(10)
        seen["worker"] = addernet.backends.current()
        done.set()

    default = addernet.backends.current()
    t = threading.Thread(target=worker)
    t.start()
    with addernet.backends.use_backend(other):
        inside.set()
        done.wait(10)
        seen["main"] = addernet.backends.current()
    t.join()
    assert seen == {"main": other, "worker": default}

    # And a block in another thread does not reach this one.
    def block():
        with addernet.backends.use_backend(other):
            inside.set()
            done.wait(10)

    inside.clear(), done.clear()
    t = threading.Thread(target=block)
    t.start()
    inside.wait(10)
    here = addernet.backends.current()
    done.set()
    t.join()
    assert here == default


@needs_native
def test_use_backend_compiles_without_graph_breaks():
    layer = addernet.AdderConv2d(3, 4, 3, padding=1).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="eager")
    with addernet.backends.use_backend("reference"):
        a = compiled(x)
    b = compiled(x)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, layer(x))


@pytest.mark.triton
@pytest.mark.skipif("triton" not in addernet.backends.available(), reason="triton backend not available")
@pytest.mark.parametrize("shape", [((2, 3, 7, 7), (4, 3, 3, 3), 1, 1, 1), ((1, 3, 5, 9), (4, 3, 2, 2), 1, 0, 4),
                                   ((2, 3, 9, 9), (4, 3, 3, 3), 2, 1, 1)], ids=["same", "dilated", "strided"])
@pytest.mark.parametrize("where, value", [("w", float("nan")), ("x", float("nan")), ("x", float("inf")),
                                          ("g", float("inf"))], ids=["w_nan", "x_nan", "x_inf", "g_inf"])
def test_triton_nan_and_inf_input_gradient_matches_the_reference(shape, where, value):
    import addernet.backends.triton  # noqa: F401  (registers the ops)
    from addernet.backends import reference

    xs, ws, stride, padding, dilation = shape
    x, w, g = _with_special_value(xs, ws, stride, padding, dilation, where, value, seed=1)
    args = ([stride] * 2, [padding] * 2, [dilation] * 2, 1)
    ref, _ = reference.backward(g.double(), x.double(), w.double(), *args)
    gx, _ = torch.ops.addernet.triton_adder_conv2d_backward(g, x, w, *args, [True, False])
    assert torch.equal(gx.isnan(), ref.isnan()) and torch.equal(gx.isinf(), ref.isinf())
    torch.testing.assert_close(gx.double(), ref, rtol=1e-4, atol=1e-4, equal_nan=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape, special", _nan_inf_cases(), ids=lambda c: c[0])
def test_cuda_nan_and_inf_input_gradient_matches_the_reference(dtype, shape, special):
    # The CUDA kernel's hardtanh once used fminf/fmaxf, which drop a NaN: the same cases as the CPU's.
    _, xs, ws, stride, padding, dilation = shape
    _, where, value = special
    if dtype == torch.float16 and value == 3e6:
        pytest.skip("3e6 overflows float16; the float32 case covers it")
    x, w, g = (t.to(dtype) for t in _with_special_value(xs, ws, stride, padding, dilation, where, value, seed=0))
    args = ([stride] * 2, [padding] * 2, [dilation] * 2, 1)
    from addernet.backends import reference
    ref, _ = reference.backward(g.double(), x.double(), w.double(), *args[:3], 1)
    gx, _ = torch.ops.addernet.adder_conv2d_backward(g.cuda(), x.cuda(), w.cuda(), *args, [True, False])
    gx = gx.cpu().double()
    assert torch.equal(gx.isnan(), ref.isnan()) and torch.equal(gx.isinf(), ref.isinf())
    tol = 2e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(gx, ref, rtol=tol, atol=tol * 10, equal_nan=True)
