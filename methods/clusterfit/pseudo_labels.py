"""Stages 2 and 3: k-means over N_pre's features, and the cluster ids saved as pseudo-labels.

The defaults are VISSL's ``faiss.Kmeans(d, K, niter=50)``: Euclidean distance, 50 iterations, seed
1234, and at most 256 points per centroid used to fit (faiss samples; here the sample is explicit,
so the torch fallback does the same), then every point assigned to its nearest centroid in batches.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from addernet.train import atomic_write
from methods.common import kmeans
from methods.common.deprecation import renamed_keyword

OFFICIAL_ITERS = 50
OFFICIAL_SEED = 1234
MAX_POINTS_PER_CENTROID = 256   # faiss's ClusteringParameters default
FORMAT = "clusterfit-pseudo-labels/1"


@dataclass
class PseudoLabels:
    """Cluster ids of D_cf (row i is image i of the dataset the features came from)."""
    labels: torch.Tensor        # (N,) int64 in [0, K)
    centroids: torch.Tensor     # (K, D) float32
    config: dict = field(default_factory=dict)   # how they were made: k, iters, seed, layer, solver, ...

    def __post_init__(self):
        check_pseudo_labels(self.labels, self.centroids)

    @property
    def num_clusters(self) -> int:
        return int(self.centroids.shape[0])

    def cluster_sizes(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_clusters)

    def save(self, path: str | os.PathLike) -> None:
        """One torch file: {"format", "labels", "centroids", "config"}, written atomically."""
        obj = {"format": FORMAT, "labels": self.labels.cpu(), "centroids": self.centroids.cpu(),
               "config": dict(self.config)}
        atomic_write(path, lambda f: torch.save(obj, f))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PseudoLabels":
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"pseudo-label file {path} not found")
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise ValueError(f"{path} is not a ClusterFit pseudo-label file (expected format {FORMAT!r})")
        return cls(obj["labels"], obj["centroids"], obj["config"])


def check_pseudo_labels(labels: torch.Tensor, centroids: torch.Tensor, n: int | None = None) -> None:
    """Raise ValueError unless labels are (N,) integers in [0, K) for K = len(centroids)."""
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.dtype != torch.int64:
        raise ValueError(f"pseudo-labels must be a 1-D int64 tensor, got "
                         f"{getattr(labels, 'dtype', type(labels))} of shape {tuple(getattr(labels, 'shape', ()))}")
    if not isinstance(centroids, torch.Tensor) or centroids.dim() != 2 or centroids.shape[0] < 1:
        raise ValueError(f"centroids must be a (K, D) tensor, got shape {tuple(getattr(centroids, 'shape', ()))}")
    k = centroids.shape[0]
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"pseudo-labels must lie in [0, {k}), found {int(labels.min())}..{int(labels.max())}")
    if n is not None and len(labels) != n:
        raise ValueError(f"{len(labels)} pseudo-labels for a dataset of {n} images")


def default_sample(n: int, k: int, max_points_per_centroid: int = MAX_POINTS_PER_CENTROID) -> int | None:
    """faiss's rule: fit on at most ``max_points_per_centroid * k`` points."""
    cap = max_points_per_centroid * k
    return cap if n > cap else None


def make_pseudo_labels(features: torch.Tensor, k: int, *, iters: int = OFFICIAL_ITERS, seed: int = OFFICIAL_SEED,
                       spherical: bool = False, solver: str = "auto", sample: int | None | str = "auto",
                       batch_size: int = 65536, device=None, config: dict | None = None,
                       backend: str | None = None) -> PseudoLabels:
    """k-means (``methods.common.kmeans``) of (N, D) features into ``k`` clusters; every point gets the
    id of its nearest centroid. ``sample="auto"`` fits on at most 256 points per centroid, as faiss
    does; an int fits on that many; None fits on all points. ``solver``: k-means's ("faiss",
    "torch", "auto"; ``backend=`` is its old name, deprecated). ``device``: where the torch solver
    (and the assignment) runs, e.g. "cuda"; faiss uses its GPUs when it has them. ``config`` is
    stored with the result."""
    solver = renamed_keyword("make_pseudo_labels", "backend", "solver", backend, solver, "auto")
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    n = features.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"K must be in 1..{n} (the number of images), got {k}")
    if iters < 1:
        raise ValueError(f"k-means needs at least 1 iteration, got {iters}")
    if sample == "auto":
        sample = default_sample(n, k)
    res = kmeans(features, k, iters=iters, seed=seed, spherical=spherical, solver=solver, sample=sample,
                 batch_size=batch_size, device=device)
    # methods.common.kmeans assigns every row, not only the sample it fitted on
    labels = torch.as_tensor(res.labels).long().reshape(-1).cpu()
    cfg = {"k": k, "iters": iters, "seed": seed, "spherical": spherical, "sample": sample,
           "solver": res.solver, "inertia": float(res.inertia), "n": n, "dim": int(features.shape[1])}
    cfg.update(config or {})
    return PseudoLabels(labels, torch.as_tensor(res.centroids).float().cpu(), cfg)


def random_pseudo_labels(n: int, k: int, *, seed: int = 0, dim: int = 1) -> PseudoLabels:
    """A control: ``n`` ids drawn uniformly from K (seeded), with zero centroids. An N_cf trained on
    these with the same recipe shows how much of N_cf's probe accuracy the clusters account for and
    how much the training and augmentation alone give."""
    if n < 1 or k < 1:
        raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))
    return PseudoLabels(labels, torch.zeros(k, dim), {"k": k, "n": n, "seed": seed, "random": True})
