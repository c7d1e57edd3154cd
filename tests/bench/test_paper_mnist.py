"""benchmarks/paper_mnist.py: the gradient variants of the ablation against autograd of their
formulas, and the script end to end (--quick, tiny budget)."""
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import addernet
from addernet.models import get_model
from addernet.nn import AdderConv2d

from helpers.paths import ROOT  # noqa: E402
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import paper_mnist_grads as pg  # noqa: E402

pytestmark = pytest.mark.skipif(not addernet.backends.native.extension.native_available(), reason="needs the native op")

CONF = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2))


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 9, 10, generator=g, dtype=torch.float64)
    w = torch.randn(5, 4, 3, 3, generator=g, dtype=torch.float64)
    out = addernet.functional.adder_conv2d(x, w, None, **CONF)
    gy = torch.randn(out.shape, generator=g, dtype=torch.float64)
    return x, w, gy


def _reference_cols(x, w):
    """Xcol (N, K, L) built by autograd-able unfold, and W as (O, K)."""
    xcol = F.unfold(x, w.shape[2:], dilation=CONF["dilation"], padding=CONF["padding"], stride=CONF["stride"])
    return xcol, w.reshape(w.shape[0], -1)


def test_unclipped_input_gradient_is_sum_g_times_w_minus_x():
    x, w, gy = _data()
    x = x.requires_grad_()
    xcol, wf = _reference_cols(x, w)
    gcol = gy.reshape(gy.shape[0], gy.shape[1], -1)
    # dL/dXcol[n,k,l] = sum_o G[n,o,l] (W[o,k] - Xcol[n,k,l]); autograd of unfold folds it onto X.
    dcol = torch.einsum("nol,nokl->nkl", gcol, wf[None, :, :, None] - xcol.detach()[:, None])
    (ref,) = torch.autograd.grad(xcol, x, dcol)
    got = pg.fp_input_grad(gy, x.detach(), w, CONF["stride"], CONF["padding"], CONF["dilation"], 1)
    torch.testing.assert_close(got, ref)
    # And through the op's autograd.
    xx = x.detach().requires_grad_()
    pg.adder_conv2d_variant(xx, w, **CONF, input_grad="fp").backward(gy)
    torch.testing.assert_close(xx.grad, ref)


@pytest.mark.parametrize("path", ["library", "unfold", "unfold-chunked"])
def test_sign_gradients_are_the_true_gradient(path, monkeypatch):
    monkeypatch.setattr(pg, "SIGN_PATH", pg._sign_grads_exact if path == "library" else pg._sign_grads_unfold)
    if path == "unfold-chunked":
        monkeypatch.setattr(pg, "_CHUNK", 1)  # one image per chunk: the chunking is exercised
    x, w, gy = _data(1)
    x, w = x.requires_grad_(), w.requires_grad_()
    xcol, wf = _reference_cols(x, w)
    y = -(xcol[:, None] - wf[None, :, :, None]).abs().sum(2)  # -sum_k |Xcol - W|, (N, O, L)
    ref_x, ref_w = torch.autograd.grad(y, (x, w), gy.reshape(y.shape))
    for dtype in (torch.float64, torch.float32):
        xx, ww = x.detach().to(dtype).requires_grad_(), w.detach().to(dtype).requires_grad_()
        pg.adder_conv2d_variant(xx, ww, **CONF, weight_grad="sign", input_grad="sign").backward(gy.to(dtype))
        tol = {} if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(xx.grad, ref_x.to(dtype), **tol)
        torch.testing.assert_close(ww.grad, ref_w.to(dtype), **tol)


def test_library_exact_mode_is_the_unfold_definition_at_lenet_size():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 28, 28, generator=g, dtype=torch.float64)
    w = torch.randn(6, 1, 5, 5, generator=g, dtype=torch.float64)
    gy = torch.randn(16, 6, 28, 28, generator=g, dtype=torch.float64)
    conf = ((1, 1), (2, 2), (1, 1))
    for a, b in zip(pg._sign_grads_exact(gy, x, w, *conf, True, True), pg._sign_grads_unfold(gy, x, w, *conf, True, True)):
        torch.testing.assert_close(a, b)


def test_paper_combination_is_the_librarys_backward_and_modes_mix():
    x, w, gy = _data(2)
    lib_x, lib_w = x.clone().requires_grad_(), w.clone().requires_grad_()
    addernet.functional.adder_conv2d(lib_x, lib_w, None, **CONF).backward(gy)
    for wg in pg.WEIGHT_GRADS:
        for ig in pg.INPUT_GRADS:
            xx, ww = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = pg.adder_conv2d_variant(xx, ww, **CONF, weight_grad=wg, input_grad=ig)
            torch.testing.assert_close(y, addernet.functional.adder_conv2d(x, w, None, **CONF))
            y.backward(gy)
            if wg == "fp":
                torch.testing.assert_close(ww.grad, lib_w.grad)
            else:
                assert not torch.allclose(ww.grad, lib_w.grad)
            if ig == "hardtanh":
                torch.testing.assert_close(xx.grad, lib_x.grad)
            else:
                assert not torch.allclose(xx.grad, lib_x.grad)
    with pytest.raises(ValueError, match="input_grad must be one of"):
        pg.adder_conv2d_variant(x, w, input_grad="clip")


def test_use_gradients_swaps_every_adder_layer_and_keeps_eta_and_weights():
    torch.manual_seed(0)
    model = get_model("lenet5_bn", kind="adder", eta=0.2)
    ref = get_model("lenet5_bn", kind="adder", eta=0.2)
    ref.load_state_dict(model.state_dict())
    pg.use_gradients(model, "fp", "hardtanh")
    adders = [m for m in model.modules() if isinstance(m, AdderConv2d)]
    assert len(adders) == 5 and all(type(m) is pg.VariantAdderConv2d for m in adders)
    assert all(m.eta == 0.2 for m in adders)
    x, y = torch.randn(4, 1, 28, 28), torch.arange(4)
    for m in (model, ref):
        F.cross_entropy(m(x), y).backward()
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)  # the paper's backward, eta-scaled, as the library's


def test_quick_run_writes_table_json_and_figures(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    out = tmp_path / "pm"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "paper_mnist.py"), "--quick", "--train-size", "256",
                        "--test-size", "256", "--threads", "1", "--out", str(out), "--no-progress"], env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((out / "paper_mnist.json").read_text())
    assert set(res["accuracy"]) == {"adder", "conv"}
    assert len(res["ablation"]) == 12 and all(len(row["acc"]) == len(res["config"]["seeds"]) == 1 for row in res["ablation"])
    assert res["cycles"]["paper_counts"] == {"cnn": 2_610_000, "adder": 1_740_000}
    for name in ("fig1_features.png", "fig2_filters.png", "weights.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| weight grad | input grad | eta |" in (out / "paper_mnist.md").read_text()
    # --merge joins runs over disjoint seeds; the same seed twice is refused.
    merged = tmp_path / "merged"
    script = os.path.join(ROOT, "benchmarks", "paper_mnist.py")
    r = subprocess.run([sys.executable, script, "--merge", str(out), "--out", str(merged)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((merged / "paper_mnist.json").read_text())
    assert again["accuracy"]["adder"]["per_seed"] == res["accuracy"]["adder"]["per_seed"]
    assert (merged / "fig1_features.png").exists()
    r = subprocess.run([sys.executable, script, "--merge", str(out), str(out), "--out", str(merged)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "share seeds" in r.stderr
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "paper_mnist.py"), "--data", "cifar10"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
