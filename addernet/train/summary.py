"""The side-by-side table of finished runs (adder vs conv): printed, and saved as summary.json/.md."""
from __future__ import annotations

import json
import os
import platform

import torch

from .checkpoint import atomic_write_bytes

COLUMNS = (("kind", "kind"), ("test_acc", "test acc (%)"), ("best_test_acc", "best (%)"),
           ("seconds_per_epoch", "s/epoch"), ("mults", "mults/image"), ("adds", "adds/image"),
           ("abs", "abs/image"), ("params", "params"))


def _cell(key, v):
    if v is None:
        return "-"
    if key in ("test_acc", "best_test_acc"):
        return f"{100 * v:.2f}"
    if key == "seconds_per_epoch":
        return f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def format_table(rows: list[dict]) -> str:
    """A Markdown table; it reads as plain text too."""
    head = [title for _, title in COLUMNS]
    body = [[_cell(k, r.get(k)) for k, _ in COLUMNS] for r in rows]
    widths = [max(len(c) for c in col) for col in zip(head, *body)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def environment() -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}


def write_summary(folder: str, rows: list[dict], header: dict) -> str:
    """summary.json ({'header', 'rows', 'environment'}) and summary.md in ``folder``; returns the table."""
    table = format_table(rows)
    env = environment()
    doc = {"header": header, "rows": rows, "environment": env}
    atomic_write_bytes(os.path.join(folder, "summary.json"), (json.dumps(doc, indent=1) + "\n").encode())
    desc = ", ".join(f"{k} {v}" for k, v in header.items())
    envs = ", ".join(f"{k} {v}" for k, v in env.items())
    md = f"# Training summary\n\n{desc}\n\n{table}\n\nAccuracy is the last epoch's; time is train + test per epoch.\n" \
         f"Operation counts: `addernet.train.weight_layer_ops` (weight layers only).\n\n{envs}\n"
    atomic_write_bytes(os.path.join(folder, "summary.md"), md.encode())
    return table
