"""addernet.train: the CLI end to end, metrics and summary files, bit-for-bit resume, crash-safe
checkpoints, the cosine schedule and the operation count. Everything trains on the embedded 8x8
digits with the tiny model and a few batches, to stay fast on a busy machine."""
import json
import math
import os

import pytest
import torch

from addernet import AdderConv2d, cli
from addernet.models import get_model
from addernet.train import (TrainConfig, build_model, build_optimizer, cosine_schedule, fit,
                            load_checkpoint, save_checkpoint, train_one_epoch, weight_layer_ops)
from addernet.train import amp as train_amp

PNG = b"\x89PNG\r\n\x1a\n"
BASE = dict(data="digits", model="tinynet", kind="adder", epochs=4, batch_size=128, limit_batches=3,
            progress=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cosine_schedule_values():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = cosine_schedule(opt, epochs=2, steps_per_epoch=4)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * t / 8)) for t in range(8)])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0) and sched.base_lrs == [0.1]

    # per epoch, base 0.1 over 400 epochs is the official CIFAR schedule 0.05 * (1 + cos(pi e / 400))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = cosine_schedule(opt, epochs=400, per_step=False)
    seen = {}
    for e in range(401):
        seen[e] = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
    for e in (0, 1, 100, 200, 399, 400):
        assert seen[e] == pytest.approx(0.05 * (1 + math.cos(math.pi * e / 400)), abs=1e-12)


def test_weight_layer_ops_lenet5_bn():
    # LeNet-5-BN (6-16-120-84-10) on 1x28x28, taps = output elements * in_channels * kh * kw:
    #   conv1 layer(1, 6, 5, pad 2):   6 * 28 * 28 * 1 * 25  = 117,600
    #   conv2 layer(6, 16, 5):        16 * 10 * 10 * 6 * 25  = 240,000
    #   fc1   layer(16, 120, 5):     120 *  1 *  1 * 16 * 25 =  48,000
    #   fc2   layer(120, 84, 1):      84 * 120               =  10,080
    #   fc3   layer(84, 10, 1):       10 * 84                =     840
    # conv: 416,520 multiplications and as many additions.
    # adder (all five layers, as the paper): 416,520 taps, each 2 adds + 1 abs, no multiplications.
    # With conv1 and fc3 kept as convolutions: 118,440 mults and adds; 298,080 adder taps.
    conv = weight_layer_ops(get_model("lenet5_bn", kind="conv"), (1, 28, 28))
    adder = weight_layer_ops(get_model("lenet5_bn", kind="adder"), (1, 1, 28, 28))
    ends = weight_layer_ops(get_model("lenet5_bn", kind="adder", first_layer="conv", last_layer="conv"), (1, 28, 28))
    assert conv == {"mults": 416_520, "adds": 416_520, "abs": 0}
    assert adder == {"mults": 0, "adds": 2 * 416_520, "abs": 416_520}
    assert ends == {"mults": 118_440, "adds": 118_440 + 2 * 298_080, "abs": 298_080}


def test_weight_layer_ops_linear_and_bias():
    m = torch.nn.Sequential(AdderConv2d(2, 3, 1, bias=True), torch.nn.Flatten(), torch.nn.Linear(3 * 4, 5))
    # adder: 12 outputs * 2 taps = 24 taps -> 48 adds + 12 bias adds, 24 abs; linear: 5 * 12 MACs + 5 bias adds
    assert weight_layer_ops(m, (2, 2, 2)) == {"mults": 60, "adds": 48 + 12 + 60 + 5, "abs": 24}


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("both")
    rc = cli.main(["train", "--data", "digits", "--kind", "both", "--epochs", "2", "--batch-size", "128",
                   "--limit-batches", "3", "--out", str(out), "--no-progress", "--seed", "1"])
    assert rc == 0
    return out


def test_cli_both_writes_runs_and_summary(cli_run, capsys):
    for kind in ("adder", "conv"):
        run = cli_run / kind
        hist = json.loads((run / "metrics.json").read_text())
        assert [r["epoch"] for r in hist] == [1, 2]
        for r in hist:
            assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
            assert r["train_loss"] > 0 and r["epoch_seconds"] > 0
        assert hist[0]["lr"] == 0.1 and 0 < hist[1]["lr"] < 0.1
        csv_lines = (run / "metrics.csv").read_text().splitlines()
        assert csv_lines[0].split(",")[:7] == ["epoch", "lr", "train_loss", "train_acc", "test_loss",
                                               "test_acc", "epoch_seconds"]
        assert len(csv_lines) == 3
        assert (run / "curves.png").read_bytes()[:8] == PNG
        assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert (cli_run / "compare.png").read_bytes()[:8] == PNG
    summary = json.loads((cli_run / "summary.json").read_text())
    rows = {r["kind"]: r for r in summary["rows"]}
    assert set(rows) == {"adder", "conv"}
    assert rows["adder"]["abs"] > 0 and rows["conv"]["abs"] == 0
    assert rows["adder"]["mults"] < rows["conv"]["mults"]
    assert rows["adder"]["params"] == rows["conv"]["params"]
    assert summary["header"]["model"] == "tinynet" and summary["environment"]["torch"] == torch.__version__
    table = [line.split("|")[1].strip() for line in (cli_run / "summary.md").read_text().splitlines()
             if line.startswith("|")]
    assert table[0] == "kind" and table[2:] == ["adder", "conv"]


def test_checkpoint_is_weights_only(cli_run):
    ck = torch.load(cli_run / "adder" / "last.pt", map_location="cpu", weights_only=True)
    assert set(ck) >= {"model", "optimizer", "scheduler", "epoch", "history", "config", "rng"}
    assert ck["config"]["kind"] == "adder" and ck["config"]["data"] == "digits"
    rng = ck["rng"][0]
    assert rng["torch"].dtype == torch.uint8 and rng["numpy"]["keys"].numel() == 624
    model = build_model("tinynet", kind="adder")
    model.load_state_dict(ck["model"])


def _fit(**kw):
    return fit(TrainConfig(**{**BASE, **kw}), log=None)


def test_resume_is_bit_for_bit(tmp_path):
    whole = _fit(out=str(tmp_path / "whole"))
    _fit(out=str(tmp_path / "cut"), stop_after=2)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed = _fit(out=str(tmp_path / "cut"), resume=True)

    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = lambda h: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h]  # noqa: E731
    assert strip(whole.history) == strip(resumed.history) and len(resumed.history) == 4
    ca = load_checkpoint(tmp_path / "whole" / "last.pt")
    cb = load_checkpoint(tmp_path / "cut" / "last.pt")
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert ca["scheduler"]["last_epoch"] == cb["scheduler"]["last_epoch"] == 12
    assert torch.equal(ca["rng"][0]["torch"], cb["rng"][0]["torch"])
    assert strip(json.loads((tmp_path / "cut" / "metrics.json").read_text())) == strip(whole.history)


def test_resume_refuses_another_model(tmp_path):
    _fit(out=str(tmp_path), epochs=1, limit_batches=1)
    with pytest.raises(ValueError, match="kind"):
        _fit(out=str(tmp_path), kind="conv", resume=True)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def torn_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    ck = load_checkpoint(path)
    assert ck["epoch"] == 1 and torch.equal(ck["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]  # the temp file is gone too


def test_crash_during_fit_checkpoint_leaves_last_epoch(tmp_path, monkeypatch):
    _fit(out=str(tmp_path), epochs=2, stop_after=1, limit_batches=1)
    real_save = torch.save

    def failing(*a, **k):
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(torch, "save", failing)
    with pytest.raises(RuntimeError, match="killed"):
        _fit(out=str(tmp_path), epochs=2, limit_batches=1, resume=True)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert _fit(out=str(tmp_path), epochs=2, limit_batches=1, resume=True).history[-1]["epoch"] == 2


def test_amp_bf16_on_cpu_runs_adder_layers_in_float32():
    from addernet.data import make_loaders

    torch.manual_seed(0)
    model = build_model("tinynet", kind="adder")
    seen = []
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            m.register_forward_hook(lambda mod, inp, out: seen.append((inp[0].dtype, out.dtype)))
    train, _, _ = make_loaders("digits", None, 64)
    opt = build_optimizer(model, 0.1)
    res = train_one_epoch(model, train, opt, None, "cpu", amp="bf16", progress=False, limit_batches=2)
    assert math.isfinite(res["loss"]) and res["samples"] == 128
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)


def test_grad_scaler_keeps_adaptive_scaling():
    # eta normalises the adder weight gradient to eta * sqrt(numel) whatever the loss scale; unscale_
    # must not shrink it a second time.
    torch.manual_seed(0)
    layer = AdderConv2d(3, 4, 3, bias=False, eta=0.2)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale(layer(torch.randn(2, 3, 5, 5)).square().mean()).backward()
    scaler.unscale_(opt)
    train_amp.restore_adder_grads(layer, scaler.get_scale())
    want = 0.2 * math.sqrt(layer.weight.numel())
    assert layer.weight.grad.norm().item() == pytest.approx(want, rel=1e-4)


def test_train_help_lists_recipes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for word in ("cifar10", "400", "imagefolder", "150", "--kind", "--resume", "--distributed"):
        assert word in text
