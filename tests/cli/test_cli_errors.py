"""A user's mistake on the `addernet` command line: one line on stderr naming the flag, exit 2,
no traceback, and before any work starts (every case here returns in well under a second of work)."""
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from helpers.cli import assert_one_line, run_cli


@pytest.fixture
def blocker(tmp_path):
    """A regular file: nothing can be created under it, whoever runs the tests (root included)."""
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


TRAIN_CASES = [
    (["--epochs", "0"], ["--epochs", "at least 1"]),
    (["--epochs", "-3"], ["--epochs"]),
    (["--epochs", "two"], ["--epochs", "whole number"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--lr", "inf"], ["--lr", "finite"]),
    (["--lr", "0"], ["--lr", "above 0"]),
    (["--lr", "-0.1"], ["--lr"]),
    (["--momentum", "-1"], ["--momentum"]),
    (["--weight-decay", "nan"], ["--weight-decay"]),
    (["--eta", "-0.2"], ["--eta"]),
    (["--seed", "-1"], ["--seed"]),
    (["--workers", "-1"], ["--workers"]),
    (["--limit-batches", "0"], ["--limit-batches"]),
    (["--stop-after", "0"], ["--stop-after"]),
    (["--data", "cifar11"], ["--data", "cifar10"]),
    (["--model", "resnet21"], ["--model"]),
    (["--kind", "mult"], ["--kind"]),
    (["--amp", "fp8"], ["--amp"]),
    (["--no-such-flag"], ["--no-such-flag"]),
    (["--device", "warp9"], ["--device", "cpu, cuda"]),
    (["--device", "meta"], ["--device"]),
    (["--data", "cifar10"], ["--data-root", "never downloaded"]),
    (["--data", "mnist"], ["--data-root"]),
    (["--distributed"], ["--distributed", "torchrun"]),
]


@pytest.mark.parametrize("argv,words", TRAIN_CASES, ids=[" ".join(c[0]) for c in TRAIN_CASES])
def test_train_flag_errors(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    rc, out, err = run_cli(["train", "--data", "digits", "--out", str(tmp_path / "run"), *argv], capsys)
    assert_one_line(rc, err, *words)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_devices_that_are_not_there(tmp_path, capsys):
    for dev in ("cuda", "cuda:3"):
        rc, _, err = run_cli(["train", "--data", "digits", "--device", dev, "--out", str(tmp_path)], capsys)
        assert_one_line(rc, err, f"--device {dev}", "--device cpu")
    rc, _, err = run_cli(["bench", "--model", "lenet5_bn", "--device", "cuda"], capsys)
    assert_one_line(rc, err, "--device cuda")


def test_amp_that_does_not_apply(tmp_path, capsys):
    rc, _, err = run_cli(["train", "--data", "digits", "--device", "cpu", "--amp", "fp16",
                          "--out", str(tmp_path)], capsys)
    assert_one_line(rc, err, "--amp fp16", "bf16")


def test_data_root_missing_unreadable_or_empty(tmp_path, blocker, capsys):
    rc, _, err = run_cli(["train", "--data", "cifar10", "--data-root", str(tmp_path / "nope"),
                          "--out", str(tmp_path / "run")], capsys)
    assert_one_line(rc, err, "--data-root", "does not exist")
    rc, _, err = run_cli(["train", "--data", "cifar10", "--data-root", str(blocker),
                          "--out", str(tmp_path / "run")], capsys)
    assert_one_line(rc, err, "--data-root", "is a file")
    empty = tmp_path / "empty"
    empty.mkdir()
    for data in ("cifar10", "mnist", "imagefolder"):
        rc, _, err = run_cli(["train", "--data", data, "--data-root", str(empty),
                              "--out", str(tmp_path / "run")], capsys)
        assert_one_line(rc, err, f"--data {data}", f"--data-root {empty}")
    for name in ("test_batch", *(f"data_batch_{i}" for i in range(1, 6))):  # corrupt files: the reader's error
        (empty / name).write_bytes(b"not a pickle")
    rc, _, err = run_cli(["train", "--data", "cifar10", "--data-root", str(empty), "--out", str(tmp_path / "r")],
                         capsys)
    assert_one_line(rc, err, "--data-root", "data_batch_1", "not a readable")
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root may read anything")
def test_data_root_without_permission(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        rc, _, err = run_cli(["train", "--data", "cifar10", "--data-root", str(locked),
                              "--out", str(tmp_path / "run")], capsys)
    finally:
        locked.chmod(0o700)
    assert_one_line(rc, err, "--data-root", "permissions")


def test_unwritable_out(blocker, tmp_path, capsys):
    rc, _, err = run_cli(["train", "--data", "digits", "--out", str(blocker)], capsys)
    assert_one_line(rc, err, "--out", "is a file")
    rc, _, err = run_cli(["train", "--data", "digits", "--out", str(blocker / "run")], capsys)
    assert_one_line(rc, err, "--out", "cannot be made")
    rc, _, err = run_cli(["demo", "--out", str(blocker / "run")], capsys)
    assert_one_line(rc, err, "addernet demo", "--out")


def test_out_holding_a_run_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "conv").mkdir(parents=True)
    (run / "conv" / "metrics.json").write_text("[]")
    rc, _, err = run_cli(["train", "--data", "digits", "--out", str(run)], capsys)
    assert_one_line(rc, err, f"--out {run}", "--resume", "--overwrite")
    rc, _, err = run_cli(["train", "--data", "digits", "--out", str(run), "--resume", "--overwrite"], capsys)
    assert_one_line(rc, err, "--resume", "--overwrite")
    rc, _, err = run_cli(["demo", "--out", str(run)], capsys)
    assert_one_line(rc, err, "addernet demo", "--overwrite")
    rc, _, err = run_cli(["train", "--data", "digits", "--out", str(tmp_path), "--resume",
                          str(tmp_path / "missing.pt")], capsys)
    assert_one_line(rc, err, "--resume", "missing.pt")


def test_corrupt_checkpoint_names_the_file(tmp_path, capsys):
    from addernet.train import save_checkpoint
    from addernet.train.checkpoint import CheckpointError, load_checkpoint

    good = tmp_path / "good.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(100)}, good)
    data = good.read_bytes()
    cases = {"truncated.pt": data[: len(data) // 2], "empty.pt": b"", "garbage.pt": b"hello, not a checkpoint"}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name} is corrupt or truncated"):
            load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="not a training run"):  # readable, but not fit's
        from addernet.train import TrainConfig, fit
        fit(TrainConfig(data="digits", model="tinynet", epochs=1, limit_batches=1, resume=str(good)), log=None)

    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(cases["truncated.pt"])
    rc, _, err = run_cli(["train", "--data", "digits", "--model", "tinynet", "--out", str(run), "--resume",
                          "--no-progress"], capsys)
    assert_one_line(rc, err, str(run / "last.pt"), "corrupt or truncated")


def test_resume_with_another_run_is_one_line(tmp_path, capsys):
    from addernet.train import TrainConfig, fit

    fit(TrainConfig(data="digits", model="tinynet", epochs=1, limit_batches=1, out=str(tmp_path)), log=None)
    rc, _, err = run_cli(["train", "--data", "digits", "--model", "tinynet", "--kind", "conv", "--epochs", "2",
                          "--limit-batches", "1", "--out", str(tmp_path), "--resume", "--no-progress"], capsys)
    assert_one_line(rc, err, "last.pt", "kind")


BENCH_CASES = [
    (["--batch-size", "0"], ["--batch-size"]),
    (["--batch-size", "-2"], ["--batch-size"]),
    (["--threads", "0"], ["--threads"]),
    (["--repeats", "0"], ["--repeats"]),
    (["--warmup", "-1"], ["--warmup"]),
    (["--max-seconds", "nan"], ["--max-seconds"]),
    (["--max-seconds", "0"], ["--max-seconds"]),
    (["--model", "resnet21"], ["--model", "resnet20"]),
    (["--kind", "x"], ["--kind"]),
    (["--backends", "fastest"], ["--backends", "native"]),
    (["--kind", "conv", "--backends", "reference"], ["--backends", "--kind conv"]),
    (["--dtype", "int4"], ["--dtype", "int8"]),
    (["--energy-table", "/no/such/table.json"], ["--energy-table"]),
    (["--input", "3x32"], ["--input"]),
]


@pytest.mark.parametrize("argv,words", BENCH_CASES, ids=[" ".join(c[0]) for c in BENCH_CASES])
def test_bench_flag_errors(argv, words, capsys):
    rc, out, err = run_cli(["bench", "--model", "lenet5_bn", *argv], capsys)
    assert_one_line(rc, err, *words)
    assert out == ""  # nothing was counted or timed


def test_bench_unwritable_outputs_fail_at_once(blocker, tmp_path, capsys):
    for flag in ("--json", "--markdown", "--plot"):
        rc, out, err = run_cli(["bench", "--model", "resnet50", flag, str(blocker / "r.out")], capsys)
        assert_one_line(rc, err, flag, "cannot be made")
        assert out == ""
    rc, _, err = run_cli(["bench", "--model", "lenet5_bn", "--plot", str(tmp_path)], capsys)
    assert_one_line(rc, err, "--plot", "is a folder")


def test_bench_library_refuses_batch_size_zero():
    from addernet.bench.model_bench import BenchError, bench_model

    with pytest.raises(BenchError, match="batch_size"):
        bench_model("lenet5_bn", batch_size=0, latency=False)


def test_subprocess_shows_no_traceback(tmp_path):
    """The console path end to end: a real process, its exit status and its stderr."""
    root = str(pathlib.Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    p = subprocess.run([sys.executable, "-m", "addernet.cli", "train", "--lr", "nan", "--out", str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "--lr" in p.stderr and "Traceback" not in p.stderr


def test_bench_batch_batchnorm_cannot_train_on(capsys):
    rc, out, err = run_cli(["bench", "--model", "lenet5_bn", "--kind", "conv", "--batch-size", "1",
                            "--no-layer-latency", "--repeats", "1"], capsys)
    assert_one_line(rc, err, "batch size 1", "BatchNorm", "2 or more")


@pytest.mark.parametrize("field,value", [("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0),
                                         ("momentum", float("nan")), ("weight_decay", -1.0), ("eta", float("inf"))])
def test_library_config_refuses_non_finite_numbers(field, value):
    from addernet.train import TrainConfig, resolve

    with pytest.raises(ValueError, match=field):
        resolve(TrainConfig(data="digits", **{field: value}))


def test_bf16_on_a_gpu_without_it(tmp_path, capsys, monkeypatch):
    """Simulated: an old GPU (no bfloat16) asked for --amp bf16 is told to use fp16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    rc, _, err = run_cli(["train", "--data", "digits", "--device", "cuda", "--amp", "bf16",
                          "--out", str(tmp_path / "run")], capsys)
    assert_one_line(rc, err, "--amp bf16", "--amp fp16")


def test_ctrl_c_is_one_line(capsys, monkeypatch):
    import addernet.cli.info

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(addernet.cli.info, "info_lines", interrupted)
    rc, _, err = run_cli(["info"], capsys)
    assert rc == 130 and err == "addernet info: interrupted\n"


@pytest.mark.parametrize("workers", [0, 1])
def test_image_cut_short_found_mid_run_is_one_line(tmp_path, capsys, workers):
    """A PNG whose header reads but whose body is cut passes the check before training; decoding it
    mid-epoch is still one line naming the file (from a DataLoader worker too), not a traceback."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("a", "b"):
            d = tmp_path / "data" / split / cls
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    whole = (tmp_path / "data" / "train" / "b" / "1.png").read_bytes()
    (tmp_path / "data" / "train" / "b" / "1.png").write_bytes(whole[: len(whole) // 2])
    rc, _, err = run_cli(["train", "--data", "imagefolder", "--data-root", str(tmp_path / "data"), "--model",
                          "tinynet", "--kind", "conv", "--epochs", "1", "--batch-size", "2", "--no-progress",
                          "--workers", str(workers), "--out", str(tmp_path / "run")], capsys)
    assert_one_line(rc, err, "1.png", "could not decode image")
