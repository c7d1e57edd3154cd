"""Files a run writes get the mode a plain open() would give them: 0666 less the user's umask."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from addernet.train.checkpoint import save_checkpoint
from addernet.train.metrics import write_metrics


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_checkpoint_and_metrics_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_checkpoint({"w": torch.zeros(2)}, str(tmp_path / "last.pt"))
        write_metrics(str(tmp_path), [{"epoch": 1, "lr": 0.1}])
        (tmp_path / "plain.txt").write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == want
    for name in ("last.pt", "metrics.json", "metrics.csv"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_method_reports_and_pseudo_labels_follow_the_umask(tmp_path, umask):
    # methods/ writes through addernet.train.atomic_write too, so its files get the same modes.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from methods.clusterfit.pseudo_labels import PseudoLabels
    from methods.common.report import save_figure, write_json

    fig = plt.figure()
    old = os.umask(umask)
    try:
        write_json(tmp_path / "r.json", {"rows": [1.0]})
        save_figure(fig, tmp_path / "f.png")
        PseudoLabels(torch.tensor([0, 1]), torch.zeros(2, 3), {}).save(tmp_path / "p.pt")
    finally:
        os.umask(old)
    for name in ("r.json", "f.png", "p.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert PseudoLabels.load(tmp_path / "p.pt").labels.tolist() == [0, 1]
