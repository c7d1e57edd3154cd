"""paper_mnist's figures and the statistics beside them: 2-D features (Figure 1), first-layer filters
(Figure 2), and weight distributions with fitted Gaussian and Laplace densities."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from methods.common.report import save_figure  # noqa: E402

NAMES = {"adder": "AdderNet", "conv": "CNN"}


# ----------------------------------------------------------------------------- Figure 1

def feature_geometry(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray) -> dict:
    """How the 2-D features separate classes, as nearest-class-centre accuracy on held-out features
    with centres from the training features, under three rules: by angle (cosine to each class's
    mean direction; what separates a CNN's features, per the paper), by L1 and by L2 distance to the
    class mean (what an AdderNet's features cluster by, per the paper)."""
    classes = np.unique(train_y)
    centres = np.stack([train_f[train_y == c].mean(0) for c in classes])
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    dirs = unit(np.stack([unit(train_f[train_y == c]).mean(0) for c in classes]))
    by_angle = classes[np.argmax(unit(test_f) @ dirs.T, 1)]
    l1 = classes[np.argmin(np.abs(test_f[:, None] - centres[None]).sum(2), 1)]
    l2 = classes[np.argmin(((test_f[:, None] - centres[None]) ** 2).sum(2), 1)]
    # Spread of each class: mean distance to its centre over the mean distance between centres.
    within = np.mean([np.linalg.norm(test_f[test_y == c] - centres[i], axis=1).mean() for i, c in enumerate(classes)])
    between = np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1:]])
    return {"acc_by_angle": float((by_angle == test_y).mean()), "acc_by_l1_centre": float((l1 == test_y).mean()),
            "acc_by_l2_centre": float((l2 == test_y).mean()), "within_over_between": float(within / between)}


def plot_features(feats: dict, path: str) -> None:
    """feats: kind -> (features (N, 2), labels (N,), test accuracy); side-by-side scatter plots."""
    fig, axes = plt.subplots(1, len(feats), figsize=(6 * len(feats), 5.4))
    cmap = plt.get_cmap("tab10")
    for ax, (kind, (f, y, acc)) in zip(np.atleast_1d(axes), feats.items()):
        for c in np.unique(y):
            ax.scatter(f[y == c, 0], f[y == c, 1], s=5, alpha=0.6, color=cmap(int(c) % 10), label=str(c))
        ax.axhline(0, color="0.8", lw=0.6, zorder=0)
        ax.axvline(0, color="0.8", lw=0.6, zorder=0)
        ax.set_title(f"{NAMES[kind]}: 2-D features of held-out images (test acc {100 * acc:.1f}%)", fontsize=10)
        ax.set_xlabel("feature 1")
        ax.set_ylabel("feature 2")
    np.atleast_1d(axes)[-1].legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle("Figure 1 (miniature): a 2-D feature layer before the classifier")
    save_figure(fig, path)


# ----------------------------------------------------------------------------- Figure 2

def plot_filters(filters: dict, path: str) -> None:
    """filters: kind -> first-layer weights (O, C, k, k) as numpy; one row of filter images per net,
    each filter scaled to its own range (the paper's Figure 2 shows shapes, not scales)."""
    n = max(w.shape[0] for w in filters.values())
    fig, axes = plt.subplots(len(filters), n, figsize=(1.4 * n, 1.6 * len(filters)), squeeze=False)
    for r, (kind, w) in enumerate(filters.items()):
        for i in range(n):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i >= w.shape[0]:
                ax.axis("off")
                continue
            img = w[i].mean(0) if w.shape[1] > 1 else w[i, 0]
            ax.imshow(img, cmap="gray", interpolation="nearest")
            if i == 0:
                ax.set_ylabel(NAMES[kind], fontsize=9)
    fig.suptitle("Figure 2 (miniature): first-layer filters (each scaled to its own range)", fontsize=10)
    save_figure(fig, path)


# ----------------------------------------------------------------------------- weight distributions

def fit_distributions(w: np.ndarray) -> dict:
    """Maximum-likelihood Gaussian and Laplace fits of the weights, and the mean log-likelihood
    per weight of each (higher is the better fit)."""
    w = np.asarray(w, dtype=np.float64).ravel()
    mu, sigma = stats.norm.fit(w)
    loc, b = stats.laplace.fit(w)
    ll_g = float(stats.norm.logpdf(w, mu, sigma).mean())
    ll_l = float(stats.laplace.logpdf(w, loc, b).mean())
    return {"n": int(w.size), "gaussian": {"mu": float(mu), "sigma": float(sigma), "loglik_per_weight": ll_g},
            "laplace": {"loc": float(loc), "b": float(b), "loglik_per_weight": ll_l},
            "better_fit": "laplace" if ll_l > ll_g else "gaussian"}


def plot_weights(weights: dict, fits: dict, path: str) -> None:
    """weights: kind -> flat numpy weights of the weight layers; histogram + both fitted densities."""
    fig, axes = plt.subplots(1, len(weights), figsize=(6 * len(weights), 4.2))
    for ax, (kind, w) in zip(np.atleast_1d(axes), weights.items()):
        f = fits[kind]
        lo, hi = np.percentile(w, [0.5, 99.5])
        ax.hist(w, bins=120, range=(lo, hi), density=True, color="0.75", label=f"weights (n={w.size})")
        xs = np.linspace(lo, hi, 400)
        g, lap = f["gaussian"], f["laplace"]
        ax.plot(xs, stats.norm.pdf(xs, g["mu"], g["sigma"]), label=f"Gaussian, loglik {g['loglik_per_weight']:.3f}")
        ax.plot(xs, stats.laplace.pdf(xs, lap["loc"], lap["b"]), label=f"Laplace, loglik {lap['loglik_per_weight']:.3f}")
        ax.set_title(f"{NAMES[kind]} weight layers (mean log-likelihood per weight)", fontsize=10)
        ax.legend(fontsize=8)
    save_figure(fig, path)
