"""addernet.train's seam: custom steps (two optimisers, soft targets, double backprop), callbacks,
batch-weighted metrics, extra checkpoint state, parameter groups and the mixed-precision context.
Runs train on the embedded 8x8 digits with the tiny model and a few batches."""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from addernet import AdderConv2d, backends
from addernet.data import make_loaders
from addernet.train import (Callback, StepOutput, TrainConfig, build_model, build_optimizer, classification_step,
                            cosine_schedule, evaluate, fit, load_checkpoint, mixed_precision, restore_adder_grads,
                            set_loader_epoch, soft_target_step, train_one_epoch)
from helpers.train_steps import AdversarialStep, make_discriminator

EPOCHS, LIMIT = 3, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return make_loaders("digits", None, 32)


def assert_same(a, b, where="state"):
    """Exact equality through dicts, lists and tensors."""
    if torch.is_tensor(a):
        assert torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def strip(history):
    return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in history]


def _gan_run(digits, out, **kw):
    torch.manual_seed(0)
    model = build_model("tinynet", kind="adder")
    disc = make_discriminator()
    g_opt = build_optimizer(model, lr=0.05)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    sched = cosine_schedule(g_opt, EPOCHS, LIMIT)
    res = fit(model, digits, step=AdversarialStep(disc, d_opt, g_opt), optimizer=g_opt, scheduler=sched,
              epochs=EPOCHS, out=str(out), extra_state={"disc": disc, "disc_opt": d_opt}, limit_batches=LIMIT,
              progress=False, log=None, **kw)
    return res, disc, d_opt


def test_two_optimiser_step_trains_checkpoints_and_resumes_bit_for_bit(digits, tmp_path):
    whole, disc_w, dopt_w = _gan_run(digits, tmp_path / "whole")
    torch.manual_seed(0)
    disc_init = make_discriminator().state_dict()
    _gan_run(digits, tmp_path / "cut", stop_after=1)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed, disc_r, dopt_r = _gan_run(digits, tmp_path / "cut", resume=True)

    assert_same(whole.model.state_dict(), resumed.model.state_dict(), "model")
    assert_same(disc_w.state_dict(), disc_r.state_dict(), "disc")
    assert_same(dopt_w.state_dict(), dopt_r.state_dict(), "disc_opt")
    assert strip(whole.history) == strip(resumed.history) and len(whole.history) == EPOCHS
    # both optimisers really stepped, and the step's own metrics reached the log
    assert not torch.equal(disc_w.state_dict()["0.weight"], disc_init["0.weight"])
    assert dopt_w.state_dict()["state"][0]["step"].item() == EPOCHS * LIMIT
    assert all({"train_loss", "train_d_loss", "train_acc", "test_loss", "test_acc"} <= set(r) for r in whole.history)
    ck = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert ck["global_step"] == EPOCHS * LIMIT and set(ck["extra"]) == {"disc", "disc_opt"}
    assert ck["scheduler"]["last_epoch"] == EPOCHS * LIMIT
    assert strip(json.loads((tmp_path / "cut" / "metrics.json").read_text())) == strip(whole.history)


def _soft_loaders(digits):
    # A fixed random "teacher" gives the soft targets.
    torch.manual_seed(1)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    sets = []
    for loader in digits[:2]:
        x = torch.cat([b[0] for b in loader])
        with torch.no_grad():
            p = (teacher(x) * 3).softmax(1)
        sets.append(TensorDataset(x, p))
    gen = torch.Generator()
    return (DataLoader(sets[0], batch_size=32, shuffle=True, generator=gen),
            DataLoader(sets[1], batch_size=64))


def _soft_run(loaders, out, **kw):
    torch.manual_seed(0)
    model = build_model("tinynet", kind="adder")
    return fit(model, loaders, step=soft_target_step, eval_step=soft_target_step, epochs=EPOCHS, out=str(out),
               limit_batches=LIMIT, progress=False, log=None, lr=0.05, **kw)


def test_soft_target_step_trains_checkpoints_and_resumes_bit_for_bit(digits, tmp_path):
    loaders = _soft_loaders(digits)
    whole = _soft_run(loaders, tmp_path / "whole")
    _soft_run(loaders, tmp_path / "cut", stop_after=2)
    resumed = _soft_run(loaders, tmp_path / "cut", resume=True)
    assert_same(whole.model.state_dict(), resumed.model.state_dict(), "model")
    assert strip(whole.history) == strip(resumed.history)
    h = whole.history
    assert {"train_loss", "train_agree", "test_loss", "test_agree"} <= set(h[0]) and "train_acc" not in h[0]
    assert h[-1]["train_loss"] < h[0]["train_loss"]  # it learns the teacher
    assert (tmp_path / "whole" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    csv_head = (tmp_path / "whole" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "train_acc" not in csv_head and "train_agree" in csv_head


def test_soft_target_step_rejects_class_indices():
    model = nn.Linear(4, 3)
    with pytest.raises(ValueError, match="float targets"):
        soft_target_step(model, (torch.randn(2, 4), torch.tensor([0, 2])))
    # the default step takes probabilities too (soft cross-entropy, no accuracy)
    out = classification_step(model, (torch.randn(2, 4), torch.full((2, 3), 1 / 3)))
    assert set(out.metrics) == {"loss"}


class GradientPenaltyStep:
    """Cross-entropy plus the squared input gradient: needs autograd.grad(create_graph=True)."""

    def __init__(self, weight):
        self.weight = weight

    def __call__(self, model, batch):
        x, y = batch
        x = x.requires_grad_(True)
        ce = F.cross_entropy(model(x), y)
        (g,) = torch.autograd.grad(ce, x, create_graph=True)
        penalty = g.pow(2).flatten(1).sum(1).mean()
        return StepOutput(ce + self.weight * penalty, {"loss": ce.detach(), "penalty": penalty.detach()})


@pytest.mark.parametrize("kind", ["adder", "conv"])
def test_double_backprop_step_trains(digits, kind):
    # The adder model on the reference backend (pure PyTorch, twice differentiable).
    def train(weight):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(),
                              AdderConv2d(4, 8, 3, bias=False) if kind == "adder" else nn.Conv2d(4, 8, 3),
                              nn.BatchNorm2d(8), nn.ReLU(),  # an adder output is <= 0: BN before the ReLU
                              nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
        opt = build_optimizer(model, lr=0.05)
        set_loader_epoch(digits[0], 0, 0)  # the same batches for both runs
        with backends.use_backend("reference"):
            res = train_one_epoch(model, digits[0], opt, None, "cpu", step=GradientPenaltyStep(weight),
                                  progress=False, limit_batches=3)
        return res, model

    res, with_penalty = train(10.0)
    _, without = train(0.0)
    assert res["penalty"] > 0 and res["samples"] == 96
    # the penalty's second-order gradient reached the weights (the first layer's too)
    assert not torch.equal(with_penalty[0].weight, without[0].weight)
    assert not torch.equal(with_penalty[2].weight, without[2].weight)


class Recorder(Callback):
    def __init__(self, name, log):
        self.name, self.log = name, log

    def on_epoch_start(self, state):
        self.log.append((self.name, "start", state.epoch, state.global_step))

    def on_step(self, state, out):
        assert isinstance(out, StepOutput)
        self.log.append((self.name, "step", state.epoch, state.global_step))

    def on_epoch_end(self, state, row):
        self.log.append((self.name, "end", state.epoch, state.global_step))
        row[f"seen_by_{self.name}"] = len(state.history)


def test_callbacks_fire_in_order_and_rows_they_add_are_logged(digits, tmp_path):
    log = []
    torch.manual_seed(0)
    res = fit(build_model("tinynet", kind="conv"), digits, epochs=2, limit_batches=2, out=str(tmp_path),
              callbacks=[Recorder("a", log), Recorder("b", log)], progress=False, log=None)
    want = []
    for e in range(2):
        want += [("a", "start", e, 2 * e), ("b", "start", e, 2 * e)]
        for s in (1, 2):
            want += [("a", "step", e, 2 * e + s), ("b", "step", e, 2 * e + s)]
        want += [("a", "end", e, 2 * e + 2), ("b", "end", e, 2 * e + 2)]
    assert log == want
    assert [(r["seen_by_a"], r["seen_by_b"]) for r in res.history] == [(0, 0), (1, 1)]
    assert json.loads((tmp_path / "metrics.json").read_text())[1]["seen_by_b"] == 1


class Mean(nn.Module):
    def forward(self, x):
        return x


def _constant_step(model, batch):
    x = batch[0].float()
    metrics = {"m": x.mean()}
    if len(x) == 1:
        metrics["only_small"] = 7.0  # a metric some batches lack is averaged over the ones that have it
    return StepOutput(None, metrics)


def test_metrics_are_weighted_by_batch_size():
    batches = [(torch.tensor([1, 1, 1]),), (torch.tensor([5]),)]
    tr = train_one_epoch(Mean(), batches, None, step=_constant_step, progress=False)
    assert tr["m"] == pytest.approx(2.0) and tr["only_small"] == 7.0 and tr["samples"] == 4  # not (1+5)/2
    ev = evaluate(Mean(), batches, step=_constant_step)
    assert ev["m"] == pytest.approx(2.0) and ev["samples"] == 4
    # batch_size overrides len(batch[0]) as the weight
    weighted = lambda m, b: StepOutput(None, {"m": b[0].float().mean()}, batch_size=1)  # noqa: E731
    assert evaluate(Mean(), batches, step=weighted)["m"] == pytest.approx(3.0)
    # dict batches: every tensor reaches the step, weighted by the first tensor's length
    dict_batches = [{"x": torch.tensor([1, 1, 1]), "tag": "a"}, {"x": torch.tensor([5]), "tag": "b"}]
    dict_step = lambda m, b: StepOutput(None, {"m": b["x"].float().mean()})  # noqa: E731
    assert evaluate(Mean(), dict_batches, step=dict_step)["m"] == pytest.approx(2.0)
    with pytest.raises(TypeError, match="StepOutput"):
        evaluate(Mean(), batches, step=lambda m, b: 1.0)
    with pytest.raises(ValueError, match="scalar"):
        evaluate(Mean(), batches, step=lambda m, b: StepOutput(None, {"m": b[0].float()}))


def test_default_step_accuracy_matches_a_count(digits):
    torch.manual_seed(0)
    model = build_model("tinynet", kind="conv").eval()
    _, test, _ = digits
    hits = n = 0
    with torch.no_grad():
        for x, y in test:
            hits += (model(x).argmax(1) == y).sum().item()
            n += len(y)
    res = evaluate(model, test)
    assert res["samples"] == n and res["acc"] == pytest.approx(hits / n, abs=1e-12)


class Holder:
    """Extra state the way a method keeps it: a k-means result refreshed every epoch."""

    def __init__(self):
        self.centroids = torch.zeros(4, 2)

    def state_dict(self):
        return {"centroids": self.centroids.clone()}

    def load_state_dict(self, sd):
        self.centroids = sd["centroids"].clone()


class Refresh(Callback):
    def __init__(self, holder):
        self.holder = holder

    def on_epoch_end(self, state, row):
        self.holder.centroids = self.holder.centroids + torch.rand(4, 2)  # draws from the checkpointed RNG
        row["centroid_sum"] = self.holder.centroids.sum().item()


def _holder_run(digits, out, **kw):
    torch.manual_seed(0)
    holder = Holder()
    res = fit(build_model("tinynet", kind="conv"), digits, epochs=3, limit_batches=1, out=str(out),
              extra_state={"kmeans": holder}, callbacks=[Refresh(holder)], progress=False, log=None, **kw)
    return res, holder


def test_extra_state_round_trips_and_must_match(digits, tmp_path):
    whole, hw = _holder_run(digits, tmp_path / "whole")
    _holder_run(digits, tmp_path / "cut", stop_after=1)
    saved = load_checkpoint(tmp_path / "cut" / "last.pt")["extra"]["kmeans"]["centroids"]
    assert saved.abs().sum() > 0
    resumed, hr = _holder_run(digits, tmp_path / "cut", resume=True)
    assert torch.equal(hw.centroids, hr.centroids)
    assert strip(whole.history) == strip(resumed.history)

    with pytest.raises(ValueError, match="not in the checkpoint: other"):
        fit(build_model("tinynet", kind="conv"), digits, epochs=3, limit_batches=1, out=str(tmp_path / "cut"),
            extra_state={"kmeans": Holder(), "other": Holder()}, resume=True, progress=False, log=None)
    with pytest.raises(TypeError, match="state_dict"):
        fit(build_model("tinynet", kind="conv"), digits, epochs=1, extra_state={"x": object()}, log=None)


def test_fit_without_out_or_test_set_writes_nothing(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    res = fit(build_model("tinynet", kind="conv"), (digits[0], None), epochs=1, limit_batches=2, progress=False,
              log=None)
    assert res.out is None and list(tmp_path.iterdir()) == []
    assert set(res.history[0]) == {"epoch", "lr", "train_loss", "train_acc", "epoch_seconds"}
    with pytest.raises(ValueError, match="give out"):
        fit(build_model("tinynet"), digits, epochs=1, resume=True, log=None)
    with pytest.raises(TypeError, match="epochs"):
        fit(TrainConfig(data="digits"), epochs=3)


def test_build_optimizer_no_decay():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    frozen = model[2].bias
    frozen.requires_grad_(False)
    opt = build_optimizer(model, 0.1, weight_decay=1e-3, no_decay=["1.weight", model[1].bias])
    decay, no = opt.param_groups
    assert [id(p) for p in decay["params"]] == [id(model[0].weight), id(model[0].bias), id(model[2].weight)]
    assert [id(p) for p in no["params"]] == [id(model[1].weight), id(model[1].bias)]
    assert decay["weight_decay"] == 1e-3 and no["weight_decay"] == 0.0 and no["momentum"] == 0.9
    assert len(build_optimizer(model, 0.1).param_groups) == 1
    with pytest.raises(ValueError, match="not a trainable parameter"):
        build_optimizer(model, 0.1, no_decay=["2.bias"])
    # parameter groups: their own settings win, and no_decay splits them by identity
    opt = build_optimizer([{"params": model[0].parameters(), "lr": 0.01}, {"params": [model[2].weight]}], 0.1,
                          no_decay=[model[0].bias])
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == \
        [(0.01, 5e-4, 1), (0.01, 0.0, 1), (0.1, 5e-4, 1)]
    with pytest.raises(ValueError, match="needs a model"):
        build_optimizer(model.parameters(), 0.1, no_decay=["0.bias"])


def test_mixed_precision_context():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), AdderConv2d(4, 4, 3, bias=False))
    seen = []
    model[1].register_forward_hook(lambda m, i, o: seen.append(i[0].dtype))
    x = torch.randn(2, 1, 8, 8)
    with mixed_precision(model, "cpu", "bf16"):
        y = model(x)
        assert model[0](x).dtype == torch.bfloat16
    assert seen == [torch.float32] and y.dtype == torch.float32
    assert not model[1]._forward_pre_hooks  # the cast hooks are gone after the block
    with mixed_precision(model, "cpu", False):
        assert model[0](x).dtype == torch.float32
    with pytest.raises(ValueError, match="fp16 is for CUDA"):
        with mixed_precision(model, "cpu", "fp16"):
            pass


def test_restore_adder_grads_touches_only_the_given_optimiser():
    torch.manual_seed(0)
    a, b = AdderConv2d(2, 2, 1, bias=False, eta=0.2), AdderConv2d(2, 2, 1, bias=False, eta=0.2)
    model = nn.Sequential(a, b)
    model(torch.randn(1, 2, 3, 3)).sum().backward()
    ga, gb = a.weight.grad.clone(), b.weight.grad.clone()
    restore_adder_grads(model, 8.0, torch.optim.SGD(a.parameters(), lr=0.1))
    assert torch.equal(a.weight.grad, 8 * ga) and torch.equal(b.weight.grad, gb)


def test_docs_example_runs(tmp_path, monkeypatch):
    # docs/training.md, "Writing your own step": the example runs as printed.
    import pathlib
    import re

    doc = (pathlib.Path(__file__).parents[2] / "docs" / "training.md").read_text()
    section = doc[doc.index("## Writing your own step"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 15 <= len(code.strip().splitlines()) <= 25
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(code, "training.md", "exec"), scope)
    hist = scope["res"].history
    assert len(hist) == 5 and hist[-1]["test_acc"] > 0.5
    assert (tmp_path / "runs" / "smoothed" / "last.pt").exists()


def test_loop_with_grad_scaler_matches_the_unscaled_loop(digits):
    # The float16 path's bookkeeping (scale, unscale_, restore the eta-normalised adder gradients,
    # step, update), checked on the CPU in float32: it must give the unscaled loop's weights.
    def train(scaler):
        torch.manual_seed(0)
        model = build_model("tinynet", kind="adder")
        opt = build_optimizer(model, lr=0.05)
        set_loader_epoch(digits[0], 0, 0)  # the same batches for both runs
        train_one_epoch(model, digits[0], opt, None, "cpu", scaler=scaler, progress=False, limit_batches=3)
        return model.state_dict()

    plain = train(None)
    scaled = train(torch.amp.GradScaler("cpu", init_scale=1024.0))
    for k in plain:
        torch.testing.assert_close(scaled[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)
