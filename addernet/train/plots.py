"""Loss and accuracy curves as PNG. Uses matplotlib's object API with the Agg canvas, never pyplot,
so it neither needs a display nor changes the caller's backend."""
from __future__ import annotations

import os


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, 2)


def plot_curves(history: list[dict], path: str, title: str = "") -> str:
    """Train and test loss (left) and accuracy (right) against epoch."""
    fig, (ax_loss, ax_acc) = _figure()
    ep = [r["epoch"] for r in history]
    for split, style in (("train", "--"), ("test", "-")):
        ax_loss.plot(ep, [r[f"{split}_loss"] for r in history], style, marker=".", label=split)
        ax_acc.plot(ep, [100 * r[f"{split}_acc"] for r in history], style, marker=".", label=split)
    _label(ax_loss, ax_acc, title)
    return _save(fig, path)


def plot_compare(histories: dict[str, list[dict]], path: str, title: str = "") -> str:
    """Test loss and accuracy of several runs (e.g. adder vs conv) on shared axes."""
    fig, (ax_loss, ax_acc) = _figure()
    for name, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        line, = ax_loss.plot(ep, [r["test_loss"] for r in hist], marker=".", label=f"{name} test")
        ax_loss.plot(ep, [r["train_loss"] for r in hist], "--", color=line.get_color(), label=f"{name} train")
        ax_acc.plot(ep, [100 * r["test_acc"] for r in hist], marker=".", color=line.get_color(), label=f"{name} test")
    _label(ax_loss, ax_acc, title)
    return _save(fig, path)


def _label(ax_loss, ax_acc, title):
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        ax_loss.figure.suptitle(title)


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path
