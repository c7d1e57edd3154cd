"""Issue 22: an AdderNet trained in a user's own loop, at a constant lr, works in eval mode.

The loop is the one a user writes (no ``fit``): SGD(0.05, momentum 0.9), constant lr, then
``model.eval()``. Before the fix the BatchNorm running statistics lagged the adder outputs and
eval-mode accuracy was at chance (10 %) while training accuracy was high.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from addernet.data.embedded import load_mnist5k
from addernet.data.info import MNIST_MEAN, MNIST_STD
from addernet.models import get_model
from addernet.nn import AdderConv2d
from addernet.train.optim import adder_param_groups


def _tensors(train: bool, per_class: int):
    x, y = load_mnist5k(train=train)
    idx = np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)])
    t = torch.from_numpy(x[idx]).float().div(255).unsqueeze(1)
    return (t - MNIST_MEAN[0]) / MNIST_STD[0], torch.from_numpy(y[idx])


def _plain_loop(make_opt, epochs=2, seed=0):
    torch.manual_seed(seed)
    (x, y), (xt, yt) = _tensors(True, 40), _tensors(False, 20)
    model = get_model("lenet5_bn", kind="adder")
    opt = make_opt(model)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=g).split(16):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        eval_acc = (model(xt).argmax(1) == yt).float().mean().item()
        model.train()  # batch statistics: what the network has learnt, whatever the running ones say
        train_mode_acc = (model(xt).argmax(1) == yt).float().mean().item()
    return eval_acc, train_mode_acc


def test_sgd_constant_lr_eval_mode_is_not_at_chance():
    eval_acc, train_mode_acc = _plain_loop(lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9))
    assert train_mode_acc > 0.6, train_mode_acc  # it trained
    assert eval_acc > 0.6 and eval_acc > train_mode_acc - 0.1, (eval_acc, train_mode_acc)


def test_adam_at_its_usual_lr_trains_with_adder_param_groups():
    eval_acc, _ = _plain_loop(lambda m: torch.optim.Adam(adder_param_groups(m, lr=1e-3), lr=1e-3))
    assert eval_acc > 0.6, eval_acc


def test_adder_param_groups():
    model = get_model("lenet5_bn", kind="adder", first_layer="conv")
    groups = adder_param_groups(model, lr=1e-3, adder_lr_scale=10)
    adder = {id(m.weight) for m in model.modules() if isinstance(m, AdderConv2d)}
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-2)]
    assert {id(p) for p in groups[1]["params"]} == adder
    assert len(groups[0]["params"]) + len(groups[1]["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="positive"):
        adder_param_groups(model, lr=0.0)


def test_constant_schedule_keeps_the_lr_and_resumes(tmp_path):
    from addernet.train import TrainConfig, fit
    from addernet.train.optim import check_schedule, make_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make_schedule(opt, "constant", epochs=3, steps_per_epoch=4)
    for _ in range(12):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.1
    with pytest.raises(ValueError, match="'constant'"):
        check_schedule("cosine")
    cfg = dict(data="digits", model="tinynet", kind="adder", epochs=2, batch_size=128, limit_batches=2,
               progress=False, schedule="constant")
    whole = fit(TrainConfig(**cfg, out=str(tmp_path / "whole")), log=None)
    assert [row["lr"] for row in whole.history] == [0.1, 0.1]
    fit(TrainConfig(**cfg, out=str(tmp_path / "cut"), stop_after=1), log=None)
    resumed = fit(TrainConfig(**cfg, out=str(tmp_path / "cut"), resume=True), log=None)
    keys = ("lr", "train_loss", "test_acc")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in whole.history]
