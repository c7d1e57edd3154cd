"""Second-order gradients through the adder op (issue 11), on every backend, and grad_mode="exact".

The paper's backward is piecewise (clamp has kinks at |W - X| = 1, sign at 0), so inputs here keep
every tap away from them: X near integers, W near half-integers, so |W - X| stays at least 0.3
from any integer. There finite differences (gradgradcheck) and the analytical formulas agree.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import addernet
from addernet import functional as AF
from helpers.adder_reference import exact_gradients, second_order

BACKENDS = addernet.backends.available()
NATIVE = "native" in BACKENDS
needs_native = pytest.mark.skipif(not NATIVE, reason="native extension not built")

# The odd-shape grid: stride, padding, dilation, groups, non-square kernels, batch 0.
GRID = [
    dict(n=2, c=3, h=6, w=5, o=4, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=2, c=4, h=7, w=6, o=4, kh=3, kw=2, stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2),
    dict(n=1, c=3, h=8, w=7, o=6, kh=2, kw=3, stride=(2, 3), padding=(1, 0), dilation=(2, 1), groups=3),
    dict(n=2, c=2, h=5, w=5, o=3, kh=1, kw=1, stride=(2, 2), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=0, c=2, h=5, w=4, o=2, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
]
IDS = ["plain", "stride-pad-dil-groups", "non-square-groups3", "1x1-strided", "batch0"]


def conf(cfg):
    return cfg["stride"], cfg["padding"], cfg["dilation"], cfg["groups"]


def away_from_kinks(cfg, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    jitter = lambda *s: 0.15 * (torch.rand(*s, generator=gen, dtype=dtype) - 0.5)  # noqa: E731
    xs = (cfg["n"], cfg["c"], cfg["h"], cfg["w"])
    ws = (cfg["o"], cfg["c"] // cfg["groups"], cfg["kh"], cfg["kw"])
    x = torch.randint(-2, 3, xs, generator=gen).to(dtype) + jitter(*xs)
    w = torch.randint(-2, 2, ws, generator=gen).to(dtype) + 0.5 + jitter(*ws)
    return x, w


def second_order_vjps(backend, cfg, x, w, g, hx, hw, grad_mode="paper"):
    """(dG, dX, dW) of <hx, grad_X> + <hw, grad_W>, by autograd through the backend's backward."""
    x, w, g = (t.detach().requires_grad_() for t in (x, w, g))
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend, grad_mode=grad_mode)
    gx, gw = torch.autograd.grad(y, (x, w), g, create_graph=True)
    inner = (gx * hx).sum() + (gw * hw).sum()
    if not inner.requires_grad:  # an empty batch can leave the gradients constants
        return tuple(torch.zeros_like(t) for t in (g, x, w))
    return torch.autograd.grad(inner, (g, x, w), allow_unused=True, materialize_grads=True)


def float64_backends():
    return [b for b in BACKENDS if b != "triton"]  # the Triton kernels take float32/16 only


@pytest.mark.parametrize("grad_mode", ["paper", "exact"])
@pytest.mark.parametrize("cfg", GRID, ids=IDS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_second_order_matches_the_formulas(backend, cfg, grad_mode):
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, w = away_from_kinks(cfg, dtype)
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="reference")
    gen = torch.Generator().manual_seed(1)
    g, hx, hw = (torch.randn(t.shape, generator=gen, dtype=dtype) for t in (y, x, w))
    got = second_order_vjps(backend, cfg, x, w, g, hx, hw, grad_mode)
    want = second_order(x, w, g, hx, hw, *conf(cfg), grad_mode=grad_mode)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for name, a, b in zip(("dG", "dX", "dW"), got, want):
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a.double(), b, rtol=0, atol=tol * scale, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("grad_mode", ["paper", "exact"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_double_backward_warns_of_no_missing_autograd_kernel(backend, grad_mode):
    # The defect of issue 11: torch warned "autograd kernel was not registered" and went on with
    # a dropped gradient path.
    cfg = GRID[1]
    x, w = away_from_kinks(cfg, torch.float32)
    x.requires_grad_()
    w.requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend, grad_mode=grad_mode)
        gx, = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
        gx.pow(2).sum().backward()
    assert not [str(c.message) for c in caught if "autograd" in str(c.message)]
    assert w.grad is not None and torch.isfinite(w.grad).all()


@pytest.mark.parametrize("cfg", GRID, ids=IDS)
@pytest.mark.parametrize("backend", float64_backends())
def test_gradgradcheck(backend, cfg):
    x, w = away_from_kinks(cfg)
    x.requires_grad_()
    w.requires_grad_()
    fn = lambda x, w: AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend)  # noqa: E731
    # fast_mode (random projections) trips over an empty batch in torch's own code; that case is cheap.
    assert torch.autograd.gradgradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=cfg["n"] > 0)


@pytest.mark.parametrize("cfg", GRID[:3], ids=IDS[:3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_first_order_is_sign(backend, cfg):
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, w = away_from_kinks(cfg, dtype)
    x.requires_grad_()
    w.requires_grad_()
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend, grad_mode="exact")
    y_paper = AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend)
    torch.testing.assert_close(y, y_paper, rtol=0, atol=0)  # same forward
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    gx_ref, gw_ref = exact_gradients(x.detach(), w.detach(), g, *conf(cfg))
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(gx.double(), gx_ref, rtol=0, atol=tol * max(1, gx_ref.abs().max().item()))
    torch.testing.assert_close(gw.double(), gw_ref, rtol=0, atol=tol * max(1, gw_ref.abs().max().item()))


@needs_native
@pytest.mark.parametrize("cfg", GRID[:3], ids=IDS[:3])
def test_exact_gradgradcheck(cfg):
    x, w = away_from_kinks(cfg)
    x.requires_grad_()
    w.requires_grad_()
    fn = lambda x, w: AF.adder_conv2d(x, w, None, *conf(cfg), backend="native", grad_mode="exact")  # noqa: E731
    # "exact" is the true gradient, so even the first order passes a finite-difference check.
    assert torch.autograd.gradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_bad_grad_mode_is_a_clear_error():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(ValueError, match="grad_mode"):
        AF.adder_conv2d(x, w, grad_mode="surrogate")
    with pytest.raises(ValueError, match="grad_mode"):
        addernet.AdderConv2d(2, 3, 3, grad_mode="Exact")


def test_grad_mode_reaches_layers_through_convert():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 2, 3))
    conv = addernet.convert(net, grad_mode="exact")
    assert conv[1].grad_mode == "exact" and "grad_mode='exact'" in repr(conv[1])
    assert addernet.convert(net)[1].grad_mode == "paper"
    with pytest.raises(ValueError, match="grad_mode"):
        addernet.convert(net, grad_mode="sign")


# ---------------------------------------------------------------------------------------------
# A network: L = ||d CE / dx||^2 on a LeNet-5-BN adder, every parameter's gradient.

ADDER_WEIGHTS = ("conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight", "fc3.weight")  # all-adder LeNet5BN


def _input_gradient_loss_grads(backend, grad_mode="paper", dtype=torch.float64, eta=None, batch=6, train=True):
    torch.manual_seed(0)
    model = addernet.models.lenet5_bn(eta=eta).to(dtype).train(train)
    for m in model.modules():
        if isinstance(m, addernet.AdderConv2d):
            m.grad_mode = grad_mode
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(batch, 1, 28, 28, generator=gen, dtype=torch.float64).to(dtype).requires_grad_()
    y = torch.randint(0, 10, (batch,), generator=gen)
    with addernet.backends.use_backend(backend):
        ce = F.cross_entropy(model(x), y)
        gx, = torch.autograd.grad(ce, x, create_graph=True)
        loss = gx.pow(2).sum()
        names = [n for n, _ in model.named_parameters()]
        grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    return dict(zip(names, grads))


@needs_native
@pytest.mark.parametrize("grad_mode", ["paper", "exact"])
def test_lenet_input_gradient_loss_matches_reference(grad_mode):
    with warnings.catch_warnings():
        # torch warns "autograd kernel was not registered" where an op has no derivative: an error here.
        warnings.simplefilter("error")
        native = _input_gradient_loss_grads("native", grad_mode)
    reference = _input_gradient_loss_grads("reference", grad_mode)
    for name, want in reference.items():
        got = native[name]
        assert want is not None, name
        assert got is not None, f"{name}: no gradient on native"
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=lambda m: f"{name}: {m}")
    adders = [n for n, m in addernet.models.lenet5_bn().named_modules() if isinstance(m, addernet.AdderConv2d)]
    assert [a + ".weight" for a in adders] == list(ADDER_WEIGHTS)
    # The adder weights get a second-order gradient in paper mode (it is zero a.e. in exact mode).
    if grad_mode == "paper":
        assert all(native[n].abs().max() > 0 for n in ADDER_WEIGHTS)


@pytest.mark.skipif("triton" not in BACKENDS, reason="triton unavailable")
def test_lenet_input_gradient_loss_on_triton():
    # float32 (the Triton kernels' widest) on both sides, a batch of 2 (the interpreter is slow),
    # and BatchNorm in eval mode: batch statistics of 2 images make this loss so ill-conditioned
    # that float32 rounding alone moves its gradients by 10%. The float64 formulas are checked
    # away from kinks above.
    got = _input_gradient_loss_grads("triton", dtype=torch.float32, batch=2, train=False)
    want = _input_gradient_loss_grads("reference", dtype=torch.float32, batch=2, train=False)
    for name, w in want.items():
        assert got[name] is not None, name
        torch.testing.assert_close(got[name], w, rtol=1e-3, atol=1e-3 * w.abs().max().item(),
                                   msg=lambda m: f"{name}: {m}")


@needs_native
def test_eta_scales_the_final_accumulated_gradient_once():
    raw = _input_gradient_loss_grads("native", eta=None)
    scaled = _input_gradient_loss_grads("native", eta=0.2)
    for name, g in raw.items():
        if name in ADDER_WEIGHTS:
            want = g * (0.2 * g.numel() ** 0.5 / g.norm())
            torch.testing.assert_close(scaled[name], want, rtol=1e-9, atol=0)
        else:
            torch.testing.assert_close(scaled[name], g, rtol=1e-9, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Higher orders, ops, compile.

@pytest.mark.parametrize("backend", float64_backends())
def test_third_order_works_or_raises_clearly(backend):
    cfg = GRID[0]
    x, w = away_from_kinks(cfg)
    x.requires_grad_()
    w.requires_grad_()
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend=backend)
    gx, = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    gxx, = torch.autograd.grad(gx.pow(2).sum(), x, create_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            third = torch.autograd.grad(gxx.sum(), (x, w), allow_unused=True)
        except RuntimeError as exc:
            assert "third-order" in str(exc), exc
            return
    assert backend == "reference"  # only the reference promises a third order
    assert third[0] is not None


@needs_native
def test_fused_op_is_differentiable_like_its_composition():
    # Not gradcheck: the paper's input gradient is a surrogate, not the derivative of the forward.
    cfg = GRID[1]
    x, w = away_from_kinks(cfg)
    scale, shift = torch.randn(cfg["o"], dtype=torch.float64), torch.randn(cfg["o"], dtype=torch.float64)
    args = [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]

    def grads(fused):
        ts = [t.detach().requires_grad_() for t in (x, w, scale, shift)]
        if fused:
            y = torch.ops.addernet.adder_conv2d_fused(*ts, *args, True)
        else:
            z = torch.ops.addernet.adder_conv2d(ts[0], ts[1], *args)
            y = torch.relu(z * ts[2].view(1, -1, 1, 1) + ts[3].view(1, -1, 1, 1))
        first = torch.autograd.grad(y.pow(2).sum(), ts, create_graph=True)
        second = torch.autograd.grad(sum(g.pow(2).sum() for g in first), ts, allow_unused=True,
                                     materialize_grads=True)
        return first + second

    for got, want in zip(grads(True), grads(False)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------
# The native tap sums against reference.py's torch statement of them, on every ISA.

def _isas():
    if not NATIVE:
        return []
    return torch.ops.addernet._cpu_info().split("supported=")[1].split()[0].split(",")


# Layers whose one patch is the whole input (LeNet's fc layers): the native tap sums' dense path.
# K not a multiple of any vector width, output channels not of the micro-tile, groups, batch 0.
DENSE = [
    dict(n=7, c=6, h=5, w=4, o=10, kh=5, kw=4, stride=(2, 3), padding=(0, 0), dilation=(1, 1), groups=2),
    dict(n=3, c=150, h=1, w=1, o=7, kh=1, kw=1, stride=(1, 1), padding=(0, 0), dilation=(2, 2), groups=1),
    dict(n=4, c=3, h=1, w=1, o=5, kh=1, kw=1, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=0, c=4, h=2, w=2, o=3, kh=2, kw=2, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
]
DENSE_IDS = ["groups2-5x4", "1x1-K150", "1x1-K3", "batch0"]

TAP_CFGS = GRID + DENSE + [
    # K past one cache block, channels not a multiple of any register block, many positions
    dict(n=3, c=40, h=7, w=6, o=13, kh=3, kw=3, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(n=1, c=6, h=12, w=12, o=16, kh=5, kw=5, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
    dict(n=5, c=8, h=3, w=3, o=9, kh=3, kw=3, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
]


@needs_native
@pytest.mark.parametrize("isa", _isas())
@pytest.mark.parametrize("cfg", TAP_CFGS)
def test_native_tap_sums_match_the_reference(monkeypatch, isa, cfg):
    from addernet.backends import reference
    from addernet.backends.native.ops import TapSums

    monkeypatch.setenv("ADDERNET_CPU_ISA", isa)
    gen = torch.Generator().manual_seed(5)
    for dtype in (torch.float32, torch.float64):
        x, w = (t.to(dtype) for t in away_from_kinks(cfg, torch.float64))
        y = reference.forward(x, w, *conf(cfg))
        g, a, b = (torch.randn(t.shape, generator=gen, dtype=torch.float64).to(dtype) for t in (y, x, w))
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        for fn in ("hardtanh", "sign", "mask"):
            cases = [
                ("output a", lambda m: m.tapsum_output(a, None, x, w, *conf(cfg), fn)),
                ("output b", lambda m: m.tapsum_output(None, b, x, w, *conf(cfg), fn)),
                ("output a+b", lambda m: m.tapsum_output(a, b, x, w, *conf(cfg), fn)),
                ("input", lambda m: m.tapsum_input(g, x, w, *conf(cfg), fn)),
                ("weight a", lambda m: m.tapsum_weight(g, a, x, w, *conf(cfg), fn)),
                ("weight", lambda m: m.tapsum_weight(g, None, x, w, *conf(cfg), fn)),
            ]
            for what, call in cases:
                got, want = call(TapSums), call(reference)
                assert got.shape == want.shape and got.dtype == dtype, what
                scale = max(1.0, want.abs().max().item()) if want.numel() else 1.0
                torch.testing.assert_close(got.double(), want.double(), rtol=0, atol=tol * scale,
                                           msg=lambda m: f"{fn} {what}: {m}")


@needs_native
@pytest.mark.parametrize("which", ["im2col", "dense"])
def test_tap_sum_ops_pass_opcheck(which):
    # "dense": a layer whose one patch is the whole input (LeNet's fc layers) takes its own kernels.
    cfg = GRID[1] if which == "im2col" else DENSE[0]
    x, w = away_from_kinks(cfg)
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="reference")
    g, a, b = torch.randn_like(y), torch.randn_like(x), torch.randn_like(w)
    args = [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]
    ops = torch.ops.addernet
    for fn in ("hardtanh", "mask", "sign"):
        torch.library.opcheck(ops.adder_conv2d_tapsum_output.default, (a, b, x, w, *args, fn))
        torch.library.opcheck(ops.adder_conv2d_tapsum_output.default, (a, None, x, w, *args, fn))
        torch.library.opcheck(ops.adder_conv2d_tapsum_input.default, (g, x, w, *args, fn))
        torch.library.opcheck(ops.adder_conv2d_tapsum_weight.default, (g, a, x, w, *args, fn))
        torch.library.opcheck(ops.adder_conv2d_tapsum_weight.default, (g, None, x, w, *args, fn))


@needs_native
def test_backward_and_exact_ops_pass_opcheck():
    cfg = GRID[1]
    x, w = away_from_kinks(cfg)
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="reference")
    g = torch.randn_like(y)
    args = [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]
    ops = torch.ops.addernet
    req = lambda *ts: [t.detach().requires_grad_() for t in ts]  # noqa: E731
    torch.library.opcheck(ops.adder_conv2d_backward.default, (*req(g, x, w), *args, [True, True]))
    torch.library.opcheck(ops.adder_conv2d_backward.default, (*req(g, x, w), *args, [False, True]))
    torch.library.opcheck(ops.adder_conv2d_exact.default, (*req(x, w), *args))
    torch.library.opcheck(ops.adder_conv2d_exact_backward.default, (*req(g, x, w), *args, [True, True]))


@needs_native
def test_tap_sums_refuse_bad_arguments():
    cfg = GRID[0]
    x, w = away_from_kinks(cfg)
    args = [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]
    with pytest.raises(RuntimeError, match="fn must be"):
        torch.ops.addernet.adder_conv2d_tapsum_output(x, None, x, w, *args, "relu")
    with pytest.raises(RuntimeError, match="a has shape"):
        torch.ops.addernet.adder_conv2d_tapsum_output(x[:, :1], None, x, w, *args, "mask")


@needs_native
def test_compiled_exact_mode_and_tap_sums_match_eager():
    # torch.compile's AOT autograd has no double backward (torch's limit, whatever the op), so
    # what compiles is exact mode's first order and the tap sums the second order is made of.
    cfg = GRID[1]
    x, w = away_from_kinks(cfg)
    args = [list(cfg["stride"]), list(cfg["padding"]), list(cfg["dilation"]), cfg["groups"]]

    def step(x, w):
        y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="native", grad_mode="exact")
        gx, gw = torch.autograd.grad(y.pow(2).sum(), (x, w))
        # The tap sums are not differentiable (third order), so they take detached operands.
        g, xd, wd = y.detach(), x.detach(), w.detach()
        sums = (torch.ops.addernet.adder_conv2d_tapsum_output(xd, wd, xd, wd, *args, "hardtanh"),
                torch.ops.addernet.adder_conv2d_tapsum_input(g, xd, wd, *args, "mask"),
                torch.ops.addernet.adder_conv2d_tapsum_weight(g, xd, xd, wd, *args, "mask"))
        return (gx, gw) + sums

    def run(fn):
        return fn(x.clone().requires_grad_(), w.clone().requires_grad_())

    torch._dynamo.reset()
    for got, want in zip(run(torch.compile(step, backend="aot_eager", fullgraph=False)), run(step)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@needs_native
def test_bfloat16_second_order_runs_through_float32():
    cfg = GRID[1]
    x, w = away_from_kinks(cfg, torch.float32)
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="reference")
    gen = torch.Generator().manual_seed(2)
    g, hx, hw = (torch.randn(t.shape, generator=gen) for t in (y, x, w))
    bf = [t.bfloat16() for t in (x, w, g, hx, hw)]
    got = second_order_vjps("native", cfg, *bf)
    want = second_order(*[t.double() for t in bf], *conf(cfg))
    for a, b in zip(got, want):
        assert a.dtype == torch.bfloat16
        # bf16 keeps 8 bits: one rounding of each result, and of the sums the VJPs add up.
        torch.testing.assert_close(a.double(), b, rtol=2 ** -6, atol=2 ** -6 * b.abs().max().item())


# ---------------------------------------------------------------------------------------------
# The first-order backward computes only the gradients the running backward will use.

class _BackwardMasks(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the output_mask of every adder backward op called under it."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        schema = func._schema
        if "adder_conv2d" in schema.name and schema.name.endswith("_backward"):
            names = [a.name for a in schema.arguments]
            mask = kwargs["output_mask"] if kwargs and "output_mask" in kwargs else args[names.index("output_mask")]
            self.masks.append(list(mask))
        return func(*args, **(kwargs or {}))


ASKS = {
    "grad-x": lambda y, x, w: torch.autograd.grad(y, x),
    "grad-w": lambda y, x, w: torch.autograd.grad(y, w),
    "grad-xw": lambda y, x, w: torch.autograd.grad(y, (x, w)),
    "backward": lambda y, x, w: y.backward(),
    "backward-inputs-x": lambda y, x, w: y.backward(inputs=[x]),
    "backward-inputs-w": lambda y, x, w: y.backward(inputs=[w]),
}


def _leaf_grads(ask, backend, x, w, grad_mode, eta):
    x, w = (t.detach().requires_grad_() for t in (x, w))
    wt = w if eta is None else addernet.nn.grad_scale.adaptive_scale(w, eta)
    y = AF.adder_conv2d(x, wt, None, *conf(GRID[1]), backend=backend, grad_mode=grad_mode)
    y = y.pow(2).sum()
    out = ASKS[ask](y, x, w)
    if out is None:  # .backward(): read the leaves
        return x.grad, w.grad
    asked = {"grad-x": (x,), "grad-w": (w,), "grad-xw": (x, w)}[ask]
    got = dict(zip(map(id, asked), out))
    return got.get(id(x)), got.get(id(w))


@pytest.mark.parametrize("eta", [None, 0.2], ids=["leaf-weight", "eta-scaled"])
@pytest.mark.parametrize("grad_mode", ["paper", "exact"])
@pytest.mark.parametrize("ask", list(ASKS))
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_unused_gradients_are_skipped_and_used_ones_kept(backend, ask, grad_mode, eta):
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, w = away_from_kinks(GRID[1], dtype=dtype)
    with _BackwardMasks() as rec:
        got = _leaf_grads(ask, backend, x, w, grad_mode, eta)
    want = _leaf_grads(ask, "reference", x, w, grad_mode, eta)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    for name, g, r in zip("xw", got, want):
        assert (g is None) == (r is None), name
        if r is not None:
            torch.testing.assert_close(g, r, **tol, msg=lambda m: f"{name}: {m}")
    # What the engine will use, and only that, was computed.
    used = [got[0] is not None, got[1] is not None]
    assert rec.masks == [used], rec.masks


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "reference"])
def test_penalty_first_pass_skips_the_weight_gradient(backend):
    # The IGAM/gradient-penalty first pass, d ce / dx with create_graph=True: no weight gradient,
    # and the second pass still reaches the weight (through the backward op's own derivative).
    dtype = torch.float32 if backend == "triton" else torch.float64
    x, w = away_from_kinks(GRID[0], dtype=dtype)
    grads = {}
    for b in (backend, "reference"):
        xx, ww = (t.detach().requires_grad_() for t in (x, w))
        with _BackwardMasks() as rec:
            y = AF.adder_conv2d(xx, ww, None, *conf(GRID[0]), backend=b)
            gx, = torch.autograd.grad(y.pow(2).sum(), xx, create_graph=True)
            grads[b] = torch.autograd.grad(gx.pow(2).sum(), (xx, ww))
        if b != "reference":  # the first pass; the second reaches y (through gx's g = 2y) for both
            assert rec.masks == [[True, False], [True, True]], rec.masks
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-12)
    for g, r in zip(grads[backend], grads["reference"]):
        torch.testing.assert_close(g, r, **tol)


@needs_native
@pytest.mark.parametrize("layout", ["contiguous", "non-contiguous", "channels_last"])
@pytest.mark.parametrize("grad_mode", ["paper", "exact"])
@pytest.mark.parametrize("cfg", DENSE, ids=DENSE_IDS)
def test_dense_layers_second_order_matches_the_formulas(cfg, grad_mode, layout):
    x, w = away_from_kinks(cfg)
    if layout == "channels_last":
        x, w = x.to(memory_format=torch.channels_last), w.to(memory_format=torch.channels_last)
    elif layout == "non-contiguous":
        x = torch.cat([x, x], 1)[:, ::2]
        w = torch.cat([w, w], 0)[::2]
        assert not x.is_contiguous() or x.numel() == 0
    y = AF.adder_conv2d(x, w, None, *conf(cfg), backend="reference")
    gen = torch.Generator().manual_seed(1)
    g, hx, hw = (torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in (y, x, w))
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()  # detach keeps the strides
    y = AF.adder_conv2d(xr, wr, None, *conf(cfg), backend="native", grad_mode=grad_mode)
    got_first = torch.autograd.grad(y, (xr, wr), g)
    if grad_mode == "exact":
        want_first = exact_gradients(x, w, g, *conf(cfg))
    else:
        y = AF.adder_conv2d(xr, wr, None, *conf(cfg), backend="reference")
        want_first = torch.autograd.grad(y, (xr, wr), g)
    for name, a, b in zip(("gX", "gW"), got_first, want_first):
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * scale, msg=lambda m: f"{name}: {m}")
    got = second_order_vjps("native", cfg, x, w, g, hx, hw, grad_mode)
    want = second_order(x, w, g, hx, hw, *conf(cfg), grad_mode=grad_mode)
    for name, a, b in zip(("dG", "dX", "dW"), got, want):
        scale = max(1.0, b.abs().max().item()) if b.numel() else 1.0
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10 * scale, msg=lambda m: f"{name}: {m}")


@needs_native
@pytest.mark.parametrize("cfg", DENSE, ids=DENSE_IDS)
def test_dense_layers_gradgradcheck(cfg):
    x, w = away_from_kinks(cfg)
    x.requires_grad_()
    w.requires_grad_()
    fn = lambda x, w: AF.adder_conv2d(x, w, None, *conf(cfg), backend="native")  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (x, w), eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=cfg["n"] > 0)
