"""Loss and accuracy curves as PNG. Uses matplotlib's object API with the Agg canvas, never pyplot,
so it neither needs a display nor changes the caller's backend."""
from __future__ import annotations

import os


def _figure(panels: int = 2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * panels, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels)
    return fig, (list(axes) if panels > 1 else [axes])


def _metric_names(history: list[dict]) -> list[str]:
    """The metrics logged for train or test, loss and acc first."""
    names = {k.split("_", 1)[1] for r in history for k in r if k.startswith(("train_", "test_"))}
    return sorted(names, key=lambda n: ({"loss": 0, "acc": 1}.get(n, 2), n))


def plot_curves(history: list[dict], path: str, title: str = "") -> str:
    """One panel per metric (loss, accuracy, then the step's others), train and test against epoch."""
    names = _metric_names(history) or ["loss"]
    fig, axes = _figure(len(names))
    ep = [r["epoch"] for r in history]
    for ax, name in zip(axes, names):
        pct = name == "acc"
        for split, style in (("train", "--"), ("test", "-")):
            key = f"{split}_{name}"
            pts = [(e, r[key]) for e, r in zip(ep, history) if isinstance(r.get(key), (int, float))]
            if pts:
                ax.plot([e for e, _ in pts], [100 * v if pct else v for _, v in pts], style, marker=".", label=split)
        positive = all(r.get(f"{s}_{name}", 1) > 0 for r in history for s in ("train", "test")
                       if isinstance(r.get(f"{s}_{name}"), (int, float)))
        ax.set(xlabel="epoch", ylabel="accuracy (%)" if pct else name,
               yscale="log" if name == "loss" and positive else "linear")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_compare(histories: dict[str, list[dict]], path: str, title: str = "") -> str:
    """Test loss and accuracy of several runs (e.g. adder vs conv) on shared axes."""
    fig, (ax_loss, ax_acc) = _figure(2)
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
