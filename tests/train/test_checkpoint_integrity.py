"""Checkpoints you can trust (issue 26 item 1): the previous one kept beside last.pt, a SHA-256 of
the content checked on load, the structure checked against the run before use, and a write that
fails (a full disk, an I/O error) leaving what was written before intact."""
import errno
import json
import os
import shutil
import subprocess

import pytest
import torch

from addernet.train import TrainConfig, fit, load_checkpoint, save_checkpoint
from addernet.train.checkpoint import CheckpointError, CheckpointWriteError, content_sha256, verified
from helpers.cli import assert_one_line, run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RUN = ["train", "--data", "digits", "--model", "tinynet", "--limit-batches", "1", "--no-progress"]


def _run(out, epochs=2, **kw):
    return fit(TrainConfig(data="digits", model="tinynet", epochs=epochs, limit_batches=1, out=str(out), **kw), log=None)


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    _run(out, epochs=3, stop_after=2)
    return out


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_previous_checkpoint_is_kept_and_hash_round_trips(two_epochs):
    last, prev = load_checkpoint(two_epochs / "last.pt"), load_checkpoint(two_epochs / "previous.pt")
    assert (last["epoch"], prev["epoch"]) == (2, 1)
    assert verified(last) and last["sha256"] == content_sha256({k: v for k, v in last.items() if k != "sha256"})
    # A plain torch.load still reads it.
    assert torch.load(two_epochs / "last.pt", weights_only=True)["epoch"] == 2


def test_flipped_bytes_are_refused_naming_the_previous_checkpoint(two_epochs, tmp_path, capsys):
    run = _copy(two_epochs, tmp_path)
    path = run / "last.pt"
    data = bytearray(path.read_bytes())
    # 4 bytes in the middle of the largest tensor's data, so the damage cannot fall in zip padding.
    ck = load_checkpoint(path)
    big = max((t for t in ck["model"].values()), key=lambda t: t.numel())
    at = bytes(data).index(big.contiguous().view(torch.uint8).numpy().tobytes()) + big.numel() * 2
    data[at:at + 4] = bytes(b ^ 0xFF for b in data[at:at + 4])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="damaged") as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "previous.pt is intact" in msg and f"--resume {run / 'previous.pt'}" in msg
    rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(run), "--resume"], capsys)
    assert_one_line(rc, err, str(path), "damaged", "previous.pt")
    # ... and the previous one resumes, as the message says.
    rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(tmp_path / "again"), "--resume",
                          str(run / "previous.pt")], capsys)
    assert rc == 0, err
    assert load_checkpoint(tmp_path / "again" / "last.pt")["epoch"] == 3


def _edit(ck, field):
    ck = dict(ck)
    if field == "epoch":
        ck["epoch"] = -1
    elif field == "rng":
        ck["rng"] = [dict(ck["rng"][0], torch=ck["rng"][0]["torch"][:100])]
    elif field == "shape":
        model = dict(ck["model"])
        key = next(k for k, v in model.items() if v.dim() == 4)
        model[key] = torch.zeros(3, 3)
        ck["model"] = model
    elif field == "history":
        ck["history"] = "[{'epoch': 1}]"
    return ck


EDITS = {"epoch": "epoch is -1", "rng": "rng[0].torch is a torch.uint8 tensor of 100 values",
         "shape": "has shape (3, 3), this model's is", "history": "history is a str"}


@pytest.mark.parametrize("field", list(EDITS))
def test_edited_checkpoint_is_refused_with_the_problem(two_epochs, tmp_path, capsys, field):
    run = _copy(two_epochs, tmp_path)
    save_checkpoint(_edit(load_checkpoint(run / "last.pt"), field), run / "last.pt")  # re-saved: hash valid
    with pytest.raises(CheckpointError, match="does not fit this run") as info:
        _run(run, epochs=3, resume=True)
    assert EDITS[field] in str(info.value)
    rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(run), "--resume"], capsys)
    assert_one_line(rc, err, str(run / "last.pt"), EDITS[field])


def test_every_problem_is_listed_one_line_each(two_epochs, tmp_path):
    run = _copy(two_epochs, tmp_path)
    ck = load_checkpoint(run / "last.pt")
    for field in EDITS:
        ck = _edit(ck, field)
    torch.save(ck, run / "last.pt")  # stale hash: refused as damaged before its structure is read
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(run / "last.pt")
    save_checkpoint(ck, run / "last.pt")
    with pytest.raises(CheckpointError) as info:
        _run(run, epochs=3, resume=True)
    lines = str(info.value).splitlines()
    assert "(4 problems)" in lines[0] and len(lines) == 5
    for field, words in EDITS.items():
        assert sum(words in line for line in lines[1:]) == 1, (field, lines)


def test_checkpoint_without_hash_still_resumes(two_epochs, tmp_path):
    run = _copy(two_epochs, tmp_path)
    ck = load_checkpoint(run / "last.pt")
    del ck["sha256"]
    torch.save(ck, run / "last.pt")  # as addernet wrote them before the hash
    assert not verified(load_checkpoint(run / "last.pt"))
    with pytest.warns(UserWarning, match="no SHA-256"):
        res = _run(run, epochs=3, resume=True)
    assert res.history[-1]["epoch"] == 3


def test_failing_write_keeps_checkpoint_and_metrics(tmp_path, monkeypatch, capsys):
    """An injected EIO on epoch 2's checkpoint (works without root; the tmpfs test below is the real disk)."""
    out = tmp_path / "run"
    real_fsync = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(name).startswith(".last.pt.") and (out / "last.pt").exists():
            raise OSError(errno.EIO, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointWriteError, match="epoch 1 in .* are intact"):
        _run(out, epochs=3)
    rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(out), "--resume"], capsys)
    assert_one_line(rc, err, "could not write", "Input/output error", "intact", "--resume", status=1)
    monkeypatch.undo()
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert len(json.loads((out / "metrics.json").read_text())) == 1
    assert sorted(os.listdir(out)) == ["last.pt", "metrics.csv", "metrics.json"]  # no temp files left
    assert _run(out, epochs=3, resume=True).history[-1]["epoch"] == 3


def _mount_tmpfs(folder, size):
    if shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return r.returncode == 0


def test_full_disk_on_a_small_tmpfs(two_epochs, tmp_path, capsys):
    size = (two_epochs / "last.pt").stat().st_size
    disk = tmp_path / "disk"
    disk.mkdir()
    # Room for one checkpoint and the metrics, not for the second checkpoint beside it.
    if not _mount_tmpfs(disk, (size * 3 // 2) // 4096 * 4096):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-failure test covers this")
    try:
        rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(disk)], capsys)
        assert_one_line(rc, err, "could not write", "No space left", "epoch 1", "intact", status=1)
        assert load_checkpoint(disk / "last.pt")["epoch"] == 1
        assert len(json.loads((disk / "metrics.json").read_text())) == 1
        subprocess.run(["mount", "-o", f"remount,size={4 * size}", str(disk)], check=True)
        rc, _, err = run_cli([*RUN, "--epochs", "3", "--out", str(disk), "--resume"], capsys)
        assert rc == 0, err
        assert load_checkpoint(disk / "last.pt")["epoch"] == 3
    finally:
        subprocess.run(["umount", str(disk)], check=False)
