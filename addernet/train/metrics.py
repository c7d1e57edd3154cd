"""Per-epoch metrics, kept as a list of flat dicts and written as metrics.json and metrics.csv."""
from __future__ import annotations

import csv
import io
import json
import os

from .checkpoint import atomic_write_bytes

FIELDS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds")


def write_metrics(folder: str, history: list[dict]) -> None:
    """Rewrite both files from the whole history, so that after a resume they hold exactly the
    epochs the checkpoint knows, even if the run died between checkpoint and log."""
    atomic_write_bytes(os.path.join(folder, "metrics.json"), (json.dumps(history, indent=1) + "\n").encode())
    seen = {k for row in history for k in row}
    extra = sorted(seen - set(FIELDS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[*(f for f in FIELDS if f in seen), *extra], lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: _fmt(v) for k, v in row.items()})
    atomic_write_bytes(os.path.join(folder, "metrics.csv"), buf.getvalue().encode())


def _fmt(v):
    return repr(v) if isinstance(v, float) else v


def read_metrics(folder: str) -> list[dict]:
    with open(os.path.join(folder, "metrics.json")) as f:
        return json.load(f)
