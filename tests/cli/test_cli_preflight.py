"""`addernet train` finds a model that cannot take the data, an empty --out and a checkpoint of
another run before the first epoch: one line, exit 2, nothing written (issue 26 items 4 and 7)."""
import numpy as np
import pytest

from addernet.train import TrainConfig, fit
from helpers.cli import assert_one_line, run_cli
from helpers.idx_files import write_idx_set

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUICK = ["--epochs", "1", "--limit-batches", "1", "--no-progress"]


def test_empty_out_is_one_line(capsys):
    rc, _, err = run_cli(["train", "--data", "digits", "--model", "tinynet", "--out", "", *QUICK], capsys)
    assert_one_line(rc, err, "--out", "empty")


def test_resume_of_an_empty_folder_starts_fresh(tmp_path, capsys):
    # --resume with an empty --out, and --resume naming an empty folder (the help: "starts fresh").
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for out, resume in ((tmp_path / "a", []), (tmp_path / "c", [str(tmp_path / "b")])):
        rc, got, err = run_cli(["train", "--data", "digits", "--model", "tinynet", "--out", str(out), "--resume",
                                *resume, *QUICK], capsys)
        assert rc == 0, err
        assert "starting from scratch" in got and (out / "last.pt").is_file()


@pytest.mark.parametrize("argv,words", [
    (["--data", "digits", "--model", "lenet5_bn"], ["lenet5_bn cannot take", "1x8x8", "digits"]),
    (["--data", "digits", "--model", "resnet20", "--kind", "both"], ["resnet20 cannot take", "digits"]),
])
def test_model_that_cannot_take_the_images(tmp_path, capsys, argv, words):
    rc, _, err = run_cli(["train", *argv, "--out", str(tmp_path / "run"), *QUICK], capsys)
    assert_one_line(rc, err, *words)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_idx_files_of_5x5_images(tmp_path, capsys):
    write_idx_set(tmp_path / "mnist", np.random.default_rng(0), n_train=8, n_test=4, size=5)
    rc, _, err = run_cli(["train", "--data", "mnist", "--data-root", str(tmp_path / "mnist"), "--out",
                          str(tmp_path / "run"), *QUICK], capsys)
    assert_one_line(rc, err, "lenet5_bn cannot take", "1x5x5", "mnist")
    assert not (tmp_path / "run").exists()


def test_resume_with_another_model_before_work(tmp_path, capsys):
    run = tmp_path / "run"
    fit(TrainConfig(data="mnist5k", model="tinynet", epochs=2, stop_after=1, limit_batches=1, out=str(run),
                    progress=False), log=None)
    before = (run / "last.pt").stat().st_mtime_ns
    rc, _, err = run_cli(["train", "--model", "resnet20", "--out", str(run), "--resume", *QUICK], capsys)
    assert_one_line(rc, err, "resnet20 cannot take", "28x28")
    rc, _, err = run_cli(["train", "--model", "lenet5_bn", "--out", str(run), "--resume", *QUICK], capsys)
    assert_one_line(rc, err, "last.pt", "different model", "'tinynet'")
    assert (run / "last.pt").stat().st_mtime_ns == before
