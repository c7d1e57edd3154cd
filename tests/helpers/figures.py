"""Catching the matplotlib figures a library function saves, to test what they show."""
import pytest


@pytest.fixture
def saved_figures(monkeypatch):
    """A list that collects every Figure saved while the test runs (the files are still written)."""
    from matplotlib.figure import Figure

    figures, real = [], Figure.savefig

    def savefig(self, *a, **k):
        figures.append(self)
        return real(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def tick_labels(ax):
    """The y tick labels matplotlib draws inside the axis' range (major and minor, non-empty)."""
    ax.figure.canvas.draw()
    lo, hi = sorted(ax.get_ylim())
    ticks = ax.yaxis.get_major_ticks() + ax.yaxis.get_minor_ticks()
    return [t.label1.get_text() for t in ticks if lo <= t.get_loc() <= hi and t.label1.get_text()]
