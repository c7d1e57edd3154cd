"""The backend registry's contract: a backend is its own module plus one registry line.

The toy backend below is defined in this file and registered with one line
(``REGISTRY["toy"] = ...``); the op, fuse, quantize and bench paths must all pick it up without
naming it, and every op it lacks must run on the reference backend.
"""
import pytest
import torch
from torch import nn

import addernet
from addernet import backends
from addernet.backends import Backend, reference
from addernet.bench import model_bench, op_table
from addernet.fuse import fuse
from addernet.quant import quantize

calls: dict[str, int] = {}


def _counted(key, fn):
    def run(*args, **kwargs):
        calls[key] = calls.get(key, 0) + 1
        return fn(*args, **kwargs)
    return run


# Its own kernels are the reference's, counted: what matters here is who is asked.
TOY = Backend(
    name="toy",
    ops={
        "adder_conv2d": _counted("adder_conv2d", reference.BACKEND.ops["adder_conv2d"]),
        "adder_conv2d_fused": _counted("adder_conv2d_fused", reference.BACKEND.ops["adder_conv2d_fused"]),
        "adder_conv2d_u8": _counted("adder_conv2d_u8", reference.BACKEND.ops["adder_conv2d_u8"]),
    },
    dtypes={"cpu": (torch.float32, torch.float64)},
)


@pytest.fixture
def toy(monkeypatch):
    calls.clear()
    monkeypatch.setitem(backends.REGISTRY, "toy", lambda: TOY)  # the one registry line
    return "toy"


def _model():
    torch.manual_seed(0)
    return nn.Sequential(addernet.AdderConv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         addernet.AdderConv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)).eval()


def test_op_path_picks_it_up(toy):
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    y = addernet.functional.adder_conv2d(x, w, padding=1, backend=toy)
    assert calls == {"adder_conv2d": 1}
    ref = addernet.functional.adder_conv2d(x, w, padding=1, backend="reference")
    torch.testing.assert_close(y, ref)
    y.sum().backward()  # differentiable through its table's entry
    assert x.grad is not None and w.grad is not None
    with backends.use_backend(toy):
        addernet.AdderConv2d(3, 4, 3, padding=1).double()(x)
    assert calls == {"adder_conv2d": 2}
    assert toy in backends.available()


def test_an_op_it_lacks_runs_on_the_reference(toy):
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    assert backends.provider("adder_conv2d_exact", toy, "cpu") == "reference"
    y = addernet.functional.adder_conv2d(x, w, padding=1, backend=toy, grad_mode="exact")
    gx, = torch.autograd.grad(y.sum(), x)
    ref = addernet.functional.adder_conv2d(x, w, padding=1, backend="reference", grad_mode="exact")
    torch.testing.assert_close(gx, torch.autograd.grad(ref.sum(), x)[0])
    assert calls == {}


def test_fuse_and_quantize_pick_it_up(toy):
    model = _model()
    x = torch.randn(2, 3, 8, 8)
    fused = fuse(model)
    with backends.use_backend(toy):
        y = fused(x)
    assert calls == {"adder_conv2d_fused": 2}
    torch.testing.assert_close(y, model(x), rtol=1e-4, atol=1e-4)
    # The adder-only mode asks the registry at every call. (The PT2E graph takes the backend's ops
    # through torch.export, which traces a Python-function op away: see docs/architecture.md.)
    q = quantize(model, [x], batches=1, keep_first_last=False, mode="adder")
    calls.clear()
    with backends.use_backend(toy):
        q(x)
    assert calls == {"adder_conv2d_u8": 2}


def test_bench_picks_it_up(toy):
    names, notes = model_bench.resolve_backends(None, "cpu", adder_taps=1.0)
    assert toy in names, (names, notes)
    assert model_bench.check_backends(toy, "cpu") == [toy]
    with pytest.raises(model_bench.BenchError, match="'toy' does not run on cuda"):
        model_bench.check_backends(toy, "cuda")
    shape = op_table.LAYER_SETS["lenet5_bn"](1)[0]
    run = op_table.candidates(shape, [toy], "fwd", torch.float32)[toy]
    run()
    assert calls == {"adder_conv2d": 1}


def test_one_error_for_an_op_nobody_implements(toy, monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "reference", lambda: Backend("reference"))
    with pytest.raises(NotImplementedError, match="'adder_conv2d_backward'.*'toy'.*'reference'"):
        backends.op("adder_conv2d_backward", toy, "cpu")


def test_an_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setitem(backends.REGISTRY, "broken", lambda: Backend("broken", why_unavailable=lambda: "no chip"))
    assert backends.why_unavailable("broken") == "no chip"
    assert "broken" not in backends.available()
    with pytest.raises(RuntimeError, match="'broken' is not available: no chip"):
        addernet.functional.adder_conv2d(torch.randn(1, 1, 3, 3), torch.randn(1, 1, 1, 1), backend="broken")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        backends.descriptor("nope")


def test_every_descriptor_keys_its_ops_from_the_one_list():
    for name in backends.available():
        d = backends.descriptor(name)
        assert d.name == name
        assert set(d.ops) <= set(backends.OPS), (name, set(d.ops) - set(backends.OPS))
    # The reference is the fallback of every op, so it implements every op.
    assert set(backends.descriptor(backends.REFERENCE).ops) == set(backends.OPS)
