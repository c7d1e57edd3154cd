"""`addernet train --overwrite` and `make demo` (`addernet demo --overwrite`) write the new run
beside the old one and swap it in at the end: an interrupt loses nothing (issue 26 item 8)."""
import os

import pytest

from helpers.cli import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = ["train", "--data", "digits", "--model", "tinynet", "--limit-batches", "1", "--no-progress"]


def _snapshot(folder):
    return {os.path.relpath(os.path.join(d, f), folder): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


@pytest.fixture
def old_run(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli([*RUN, "--epochs", "1", "--out", str(out)], capsys)
    assert rc == 0, err
    (out / "notes.txt").write_text("the user's own file")
    return out


def _interrupt_in_epoch(monkeypatch, n):
    import importlib

    fit_module = importlib.import_module("addernet.train.engine")

    real, calls = fit_module.train_one_epoch, []

    def epoch(*a, **k):
        calls.append(1)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(fit_module, "train_one_epoch", epoch)


def test_interrupted_overwrite_leaves_the_old_run(old_run, monkeypatch, capsys):
    before = _snapshot(old_run)
    _interrupt_in_epoch(monkeypatch, 2)  # epoch 1 of the new run is written (beside the old), then Ctrl-C
    rc, _, err = run_cli([*RUN, "--epochs", "2", "--out", str(old_run), "--overwrite"], capsys)
    assert rc == 130, err
    assert _snapshot(old_run) == before
    assert os.listdir(old_run.parent) == ["run"]  # the unfinished new run is gone too


def test_interrupted_demo_leaves_the_old_run(old_run, monkeypatch, capsys):
    before = _snapshot(old_run)
    _interrupt_in_epoch(monkeypatch, 1)
    rc, _, err = run_cli(["demo", "--out", str(old_run), "--overwrite", "--epochs", "1", "--no-progress"], capsys)
    assert rc == 130, err
    assert _snapshot(old_run) == before


def test_overwrite_swaps_the_new_run_in(old_run, capsys):
    before = _snapshot(old_run)
    rc, out, err = run_cli([*RUN, "--epochs", "2", "--seed", "1", "--out", str(old_run), "--overwrite"], capsys)
    assert rc == 0, err
    after = _snapshot(old_run)
    assert after["notes.txt"] == before["notes.txt"]  # not the run's: kept
    assert after["last.pt"] != before["last.pt"] and "previous.pt" in after
    assert os.listdir(old_run.parent) == ["run"]
    assert f"  {old_run / 'last.pt'}" in out  # the list names where the files are now
