"""addernet.bench.op_check, the correctness pass of benchmarks/bench_gpu.py, on a backend defined
here: it must pass the right ops and name each wrong one (the dry-run test runs it on the native ops)."""
import os

import pytest
import torch

from addernet import backends
from addernet.backends import Backend, reference
from addernet.bench import op_check
from addernet.bench.knobs import scoped_env
from addernet.bench.shapes import CHECK_SHAPES

REF = reference.BACKEND.ops
SHAPES = CHECK_SHAPES[1:2]  # strided depthwise: the cheapest shape that reaches padding and groups


def _backend(monkeypatch, **ops):
    toy = Backend(name="toy", ops={**{k: REF[k] for k in ("adder_conv2d", "adder_conv2d_fused",
                                                          "adder_conv2d_backward")}, **ops},
                  dtypes={"cpu": (torch.float32, torch.float64)})
    monkeypatch.setitem(backends.REGISTRY, "toy", lambda: toy)
    return "toy"


def _failed(rows):
    return {(r["shape"], r["check"]) for r in rows if not r["ok"]}


def test_a_wrong_gradient_a_crash_and_a_wrong_mask_are_named_and_nothing_else(monkeypatch):
    def backward(g, x, w, stride, padding, dilation, groups, output_mask):
        # ignores output_mask: both gradients always come back
        gi, gw = REF["adder_conv2d_backward"](g, x, w, stride, padding, dilation, groups, [True, True])
        if os.environ.get("TOY_ROUTE") == "bad":
            gw = gw + 0.5  # wrong under one backward variant only
        return gi, gw

    def fused(*args):
        raise RuntimeError("no fused kernel")

    rows = op_check.check_ops(_backend(monkeypatch, adder_conv2d_backward=backward, adder_conv2d_fused=fused), "cpu",
                              log=lambda _: None, shapes=SHAPES,
                              backward_variants={"good": {"TOY_ROUTE": "good"}, "bad": {"TOY_ROUTE": "bad"}})
    # float64 is the definition's precision: only float32 is checked; 3 forwards, 2 x 2 gradients, masks
    assert len(rows) == len(SHAPES) * 8 and {r["dtype"] for r in rows} == {"float32"}
    want = {(s.name, c) for s in SHAPES for c in ("grad_weight [bad]", "fused scale+shift+relu", "output_mask")}
    assert _failed(rows) == want  # the right ops (forwards, grad_input, grad_weight [good]) pass
    assert "TOY_ROUTE" not in os.environ  # each variant's environment is undone


def test_nan_where_a_value_is_wanted_fails_and_a_close_value_passes():
    want = (torch.tensor([1.0, -2.0], dtype=torch.float64), torch.tensor([4.0, 4.0], dtype=torch.float64))
    assert op_check.check_close(torch.tensor([1.0, -2.0 + 1e-5]), want, torch.float32)[0]
    assert not op_check.check_close(torch.tensor([1.0, float("nan")]), want, torch.float32)[0]
    ok, detail = op_check.check_close(torch.tensor([1.0]), want, torch.float32)
    assert not ok and "shape" in detail


def test_scoped_env_restores_a_set_and_an_absent_variable(monkeypatch):
    monkeypatch.setenv("OP_CHECK_A", "old")
    monkeypatch.delenv("OP_CHECK_B", raising=False)
    with pytest.raises(KeyError), scoped_env({"OP_CHECK_A": "new", "OP_CHECK_B": "new"}):
        assert os.environ["OP_CHECK_A"] == os.environ["OP_CHECK_B"] == "new"
        raise KeyError
    assert os.environ["OP_CHECK_A"] == "old" and "OP_CHECK_B" not in os.environ
