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


def _epoch_axis(ax, epochs) -> None:
    """Whole epochs only: one epoch would otherwise get ticks at 0.96, 0.98 ... 1.04."""
    from matplotlib import ticker

    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True, min_n_ticks=1))
    if epochs and min(epochs) == max(epochs):
        ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)


def _plain_log_labels(ax) -> None:
    """Log-scale tick labels as plain numbers (0.92, 2), not 9.2x10^-1: a loss curve rarely spans
    enough decades for powers of ten to read better. Matplotlib still picks which ticks get one."""
    from matplotlib import ticker

    class Plain(ticker.LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            text = super().__call__(x, pos)
            return f"{x:.3g}" if text else ""

    ax.yaxis.set_major_formatter(Plain())
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _mark_resumes(ax, resumed_at) -> None:
    """A dotted line between the last epoch before a resume and the first after it."""
    for i, epoch in enumerate(resumed_at):
        ax.axvline(epoch + 0.5, color="gray", ls=":", lw=1.2, label="resumed" if i == 0 else None)


def plot_curves(history: list[dict], path: str, title: str = "", resumed_at=()) -> str:
    """One panel per metric (loss, accuracy, then the step's others), train and test against epoch;
    ``resumed_at``: the epochs after which the run was resumed, marked by a dotted line."""
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
        log = name == "loss" and positive
        ax.set(xlabel="epoch", ylabel="accuracy (%)" if pct else name, yscale="log" if log else "linear")
        if log:
            _plain_log_labels(ax)
        _epoch_axis(ax, ep)
        _mark_resumes(ax, resumed_at)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_compare(histories: dict[str, list[dict]], path: str, title: str = "", resumed_at=None) -> str:
    """Test loss and accuracy of several runs (e.g. adder vs conv) on shared axes; ``resumed_at``:
    {run name: epochs after which it was resumed}."""
    fig, (ax_loss, ax_acc) = _figure(2)
    for name, hist in histories.items():
        ep = [r["epoch"] for r in hist]
        line, = ax_loss.plot(ep, [r["test_loss"] for r in hist], marker=".", label=f"{name} test")
        ax_loss.plot(ep, [r["train_loss"] for r in hist], "--", color=line.get_color(), label=f"{name} train")
        ax_acc.plot(ep, [100 * r["test_acc"] for r in hist], marker=".", color=line.get_color(), label=f"{name} test")
        for ax in (ax_loss, ax_acc):
            for i, epoch in enumerate((resumed_at or {}).get(name, ())):
                ax.axvline(epoch + 0.5, color=line.get_color(), ls=":", lw=1.2,
                           label=f"{name} resumed" if i == 0 and ax is ax_acc else None)
    epochs = [r["epoch"] for hist in histories.values() for r in hist]
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax, epochs)
    _label(ax_loss, ax_acc, title)
    return _save(fig, path)


def _label(ax_loss, ax_acc, title):
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log")
    _plain_log_labels(ax_loss)
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
