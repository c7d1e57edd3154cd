"""The pre-registered statistic of the three methods' second version (issue 27): the paired difference.

Arms of one seed share the initialisation, the data order and (IGAM) the CE warm-up, so their
per-seed results move together; the test compares the per-seed differences, not the two means.
``paired_difference(a, b, direction=+1)`` gives the mean of a - b, its two-sided 95% t-interval,
the paired t-test's p and the Wilcoxon signed-rank p (both from scipy.stats), and the verdict of
the pre-registered rule: the claim holds when the interval excludes 0 on the paper's side.
"""
from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95
# What every --quick run prints and stores: its numbers are a smoke check, not evidence.
QUICK_NOTE = "quick run: too small to test the claim (1 seed, few epochs, few images); a smoke check only"


def _vector(values, what):
    v = np.asarray([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{what} must be a flat sequence of per-seed numbers")
    return v


def paired_difference(a, b, *, direction: int = 1, confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of per-seed results ``a`` and ``b`` (same seeds, same order).

    direction: +1 if the paper claims a > b, -1 if it claims a < b. Returns
    {"n", "diffs", "mean", "std", "ci_low", "ci_high", "t_p", "wilcoxon_p", "direction", "holds", "verdict"}:
    ``holds`` is True when the two-sided ``confidence`` t-interval of mean(a - b) excludes 0 on the
    claimed side, False otherwise, and None when it cannot be judged (fewer than 2 pairs, or a seed
    with a missing value: a NaN stays a NaN, it is not dropped). The Wilcoxon p is None below 2 pairs
    or when every difference is 0 (scipy cannot rank them).
    """
    from scipy import stats

    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 (paper claims a > b) or -1 (a < b), got {direction!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a, b = _vector(a, "a"), _vector(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired samples need one value per seed in both arms, got {a.size} and {b.size}")
    d = a - b
    n = int(d.size)
    out = {"n": n, "diffs": d.tolist(), "direction": direction, "confidence": confidence,
           "mean": float(d.mean()) if n else math.nan, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan,
           "t_p": math.nan, "wilcoxon_p": None, "holds": None}
    if n < 2 or not np.isfinite(d).all():
        out["verdict"] = ("not judged: " + ("fewer than 2 paired seeds" if n < 2 else "a seed has no value"))
        return out
    sd = float(d.std(ddof=1))
    out["std"] = sd
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    out["ci_low"], out["ci_high"] = out["mean"] - half, out["mean"] + half
    if sd > 0:
        out["t_p"] = float(stats.ttest_rel(a, b).pvalue)
    else:   # every pair differs by the same amount: the interval is that point
        out["t_p"] = 0.0 if out["mean"] != 0 else 1.0
    if np.any(d != 0):
        out["wilcoxon_p"] = float(stats.wilcoxon(a, b).pvalue)
    bound = out["ci_low"] if direction == 1 else -out["ci_high"]
    out["holds"] = bool(bound > 0)
    side = ">" if direction == 1 else "<"
    out["verdict"] = (f"{'holds' if out['holds'] else 'not shown'}: mean difference {out['mean']:+.2f}, "
                      f"{100 * confidence:.0f}% CI [{out['ci_low']:+.2f}, {out['ci_high']:+.2f}] "
                      f"{'excludes' if out['holds'] else 'does not exclude'} 0 on the claimed side (a {side} b), n={n}")
    return out


def describe(values, digits: int = 1) -> str:
    """'mean ± std' over seeds only with two or more of them; one seed prints its value alone
    ("1 seed"), so a single run never looks like a spread. ``digits``: decimals shown."""
    v = _vector(values, "values")
    if v.size == 0:
        return "n/a"
    if v.size == 1:
        return f"{v[0]:.{digits}f} (1 seed)"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def is_degenerate(predictions) -> bool:
    """True when a model's predictions on an evaluation set are all one class: a constant predictor,
    whose accuracies only measure the class balance (flag such a cell; never read it as a result)."""
    p = np.asarray(predictions)
    return p.size > 0 and bool((p == p.flat[0]).all())


def summary_figure(comparisons: dict, *, title: str, ylabel: str = "difference (points)", claims=None):
    """One summary panel: for each arm (a ``paired_difference`` result keyed by its label), the per-seed
    differences as dots and the mean with its interval as a bar; a dashed line at 0. An arm that was
    not judged shows its dots only. ``claims``: the labels that are pre-registered claims, drawn green
    (holds) or red (not shown); the others are description, drawn blue (default: every label is a claim).
    Returns a Figure (``report.save_figure`` writes it)."""
    from .report import figure

    if not comparisons:
        raise ValueError("summary_figure needs at least one comparison")
    # Wide enough for the title too (at fontsize 9, about 0.075 inch a character): a figure of
    # few comparisons cut it off.
    fig = figure(figsize=(max(1.2 + 1.5 * len(comparisons), 0.075 * len(title) + 0.6), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, c) in enumerate(comparisons.items()):
        d = np.asarray([np.nan if x is None else x for x in c["diffs"]], dtype=np.float64)
        jitter = np.linspace(-0.12, 0.12, d.size) if d.size > 1 else np.zeros(d.size)
        ax.scatter(i + jitter, d, s=14, color="0.45", zorder=3, label="seeds" if i == 0 else None)
        lo, hi = c.get("ci_low"), c.get("ci_high")
        if lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi):
            is_claim = claims is None or label in claims
            colour = ("tab:green" if c.get("holds") else "tab:red") if is_claim else "tab:blue"
            ax.errorbar(i + 0.28, c["mean"], yerr=[[c["mean"] - lo], [hi - c["mean"]]], fmt="o", color=colour,
                        capsize=4, zorder=4, label=f"mean, {100 * c.get('confidence', CONFIDENCE):.0f}% t-interval"
                        if i == 0 else None)
    ax.axhline(0.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(range(len(comparisons)))
    ax.set_xticklabels(list(comparisons), fontsize=7, rotation=15)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
