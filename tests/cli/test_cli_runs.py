"""What a run says about itself: the files it wrote, the lr it used after a stretched resume, the
model it trained; and `bench`'s tables for one kind."""
import json
import math
import os

import pytest
import torch
from torch import nn

from addernet.cli import main
from addernet.train import TrainConfig, build_model, fit

QUICK = dict(data="digits", model="tinynet", batch_size=64, limit_batches=1, progress=False)
RUN_FILES = {"last.pt", "metrics.json", "metrics.csv", "curves.png", "summary.json", "summary.md"}


def _wrote(out: str) -> list[str]:
    lines = out.splitlines()
    assert "wrote:" in lines, out
    return [line.strip() for line in lines[lines.index("wrote:") + 1:] if line.startswith("  ")]


def test_overwrite_replaces_the_run_and_the_end_lists_every_file(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"an old, broken run")
    (run / "notes.txt").write_text("mine")
    argv = ["train", "--data", "digits", "--model", "tinynet", "--epochs", "1", "--limit-batches", "1",
            "--out", str(run), "--no-progress"]
    assert main(argv) == 2  # an existing run is refused without --overwrite
    capsys.readouterr()
    assert main([*argv, "--overwrite"]) == 0
    files = _wrote(capsys.readouterr().out)
    assert {os.path.basename(f) for f in files} == RUN_FILES
    assert all(os.path.isfile(f) and os.path.dirname(f) == str(run) for f in files)
    assert set(os.listdir(run)) == RUN_FILES | {"notes.txt"}  # the user's own file stays
    assert (run / "notes.txt").read_text() == "mine"


def test_compare_lists_both_runs_and_the_comparison(tmp_path):
    res = fit(TrainConfig(**QUICK, kind="adder", epochs=1, out=str(tmp_path / "single")), log=None)
    assert sorted(os.path.basename(f) for f in res.files) == sorted(RUN_FILES)
    from addernet.train import compare

    both = compare(TrainConfig(**QUICK, kind="both", epochs=1, out=str(tmp_path / "both")), log=None)
    rel = sorted(os.path.relpath(f, tmp_path / "both") for f in both["files"])
    want = sorted([*(f"{k}/{n}" for k in ("adder", "conv") for n in RUN_FILES),
                   "summary.json", "summary.md", "compare.png"])
    assert rel == want and all(os.path.isfile(f) for f in both["files"])


def test_stretched_resume_logs_the_lr_it_uses(tmp_path):
    """Resuming a finished 1-epoch run for 3 epochs: epoch 2 runs at the stretched cosine's lr,
    0.1 * 0.5 * (1 + cos(pi/3)) = 0.075 (one step per epoch), not the old schedule's final 0."""
    fit(TrainConfig(**QUICK, epochs=1, out=str(tmp_path)), log=None)
    log = []
    with pytest.warns(UserWarning, match="stretched"):
        res = fit(TrainConfig(**QUICK, epochs=3, out=str(tmp_path), resume=True), log=log.append)
    lrs = [row["lr"] for row in res.history]
    want = [0.1 * 0.5 * (1 + math.cos(math.pi * t / 3)) for t in range(3)]
    assert lrs[0] == pytest.approx(0.1)  # the first epoch, run under the 1-epoch plan
    assert lrs[1:] == pytest.approx(want[1:], rel=1e-9)
    assert any("epoch 2/3  lr 0.075 " in line for line in log), log


class Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


def test_fit_config_with_a_model_labels_the_run_with_that_model(tmp_path):
    cfg = TrainConfig(**QUICK, kind="adder", epochs=1, out=str(tmp_path / "custom"))
    res = fit(cfg, model=Custom(), log=None)
    row = res.summary_row()
    assert row["model"] == "Custom" and row["kind"] == "conv"
    # The twin the config names, but of the other kind: the name stays, the kind follows the model.
    log = []
    res = fit(TrainConfig(**QUICK, kind="adder", epochs=1, out=str(tmp_path)),
              model=build_model("tinynet", kind="conv"), log=log.append)
    assert (res.summary_row()["model"], res.summary_row()["kind"]) == ("tinynet", "conv")
    assert log[0].startswith("conv tinynet on digits")
    header = json.loads((tmp_path / "summary.json").read_text())
    assert header["rows"][0]["kind"] == "conv"
    assert torch.load(tmp_path / "last.pt", weights_only=True)["config"]["kind"] == "conv"


def test_bench_one_kind_prints_no_backend_placeholder(tmp_path, capsys):
    md = tmp_path / "deep" / "r.md"  # folders made for the result files
    assert main(["bench", "--model", "lenet5_bn", "--kind", "conv", "--batch-size", "2", "--repeats", "1",
                 "--warmup", "0", "--no-layer-latency", "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "None" not in md.read_text()
    assert "\ninference ms " in out and "peak memory MiB, train step " in out
    assert _wrote(out) == [str(md)]
