"""The visual-word vocabulary: k-means (``methods.common``) over the dense feature vectors of one
layer of a frozen teacher, and the teacher that turns images into bag-of-words targets with it."""
from __future__ import annotations

import math

import torch
from torch import nn

from addernet.models import feature_extractor

from ..common import kmeans
from ..common.deprecation import renamed_keyword
from .targets import bow_targets, drop_border


def _dist_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class TeacherLayer:
    """``teacher``'s output at ``layer`` for a batch, in eval mode and without gradients.

    The teacher is frozen: its parameters stop requiring grad, so nothing trains it by accident."""

    def __init__(self, teacher: nn.Module, layer: str):
        self._extract = feature_extractor(teacher, [layer])   # raises ValueError for an unknown layer
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.layer = layer

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()
        fmap = self._extract(x)[self.layer]
        if fmap.dim() != 4:
            raise ValueError(f"layer {self.layer!r} gives shape {tuple(fmap.shape)}: a bag of words needs a "
                             "spatial feature map (N, C, H, W); pick a convolutional stage")
        return fmap


@torch.no_grad()
def sample_vectors(features: TeacherLayer, loader, *, max_vectors: int = 100_000, border: int = 1, seed: int = 0,
                   device="cpu", progress: bool = False) -> torch.Tensor:
    """At most ``max_vectors`` dense feature vectors (M, C), drawn evenly over the images of ``loader``.

    Each image gives the same number of randomly chosen positions (border dropped), so memory stays
    bounded whatever the data size; the loader is read once.
    """
    if max_vectors < 1:
        raise ValueError(f"max_vectors must be >= 1, got {max_vectors}")
    gen = torch.Generator().manual_seed(seed)
    n_images = len(loader.dataset) if hasattr(loader, "dataset") else None
    per_image = None
    chunks, total = [], 0
    bar = loader
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(loader, desc="vocabulary features", leave=False, dynamic_ncols=True)
    for batch in bar:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        fmap = drop_border(features(x.to(device)), border)
        n, c, h, w = fmap.shape
        if per_image is None:
            per_image = h * w if n_images is None else min(h * w, max(1, math.ceil(max_vectors / n_images)))
        vec = fmap.permute(0, 2, 3, 1).reshape(n, h * w, c)
        pick = torch.rand(n, h * w, generator=gen).argsort(1)[:, :per_image]
        chunks.append(torch.gather(vec.cpu(), 1, pick[..., None].expand(-1, -1, c)).reshape(-1, c).float())
        total += chunks[-1].shape[0]
        if n_images is None and total >= 4 * max_vectors:
            break
    if not chunks:
        raise ValueError("the loader gave no images to build a vocabulary from")
    vectors = torch.cat(chunks)
    if vectors.shape[0] > max_vectors:
        vectors = vectors[torch.randperm(vectors.shape[0], generator=gen)[:max_vectors]]
    return vectors


@torch.no_grad()
def mean_nearest_distance(vectors: torch.Tensor, words: torch.Tensor, batch_size: int = 16384) -> float:
    """Mean squared distance from each vector to its nearest word: the scale of OBoW's soft-assignment
    temperature."""
    total = 0.0
    for i in range(0, vectors.shape[0], batch_size):
        total += torch.cdist(vectors[i:i + batch_size].float(), words.float()).pow(2).amin(1).sum().item()
    return total / max(vectors.shape[0], 1)


class Vocabulary(nn.Module):
    """K visual words (K, C) of one teacher layer, with the target options. A module, so that
    ``state_dict`` checkpoints it and ``.to(device)`` moves it."""

    def __init__(self, words: torch.Tensor, mean_min_dist: float, *, layer: str, border: int = 1,
                 assign: str = "hard", pool: str = "max", binary: bool = False, inv_delta: float = 15.0):
        super().__init__()
        if words.dim() != 2:
            raise ValueError(f"words must be (K, C), got shape {tuple(words.shape)}")
        self.register_buffer("words", words.float().clone())
        self.register_buffer("mean_min_dist", torch.tensor(float(mean_min_dist)))
        self.layer, self.border = layer, border
        self.assign, self.pool, self.binary, self.inv_delta = assign, pool, binary, inv_delta

    @property
    def num_words(self) -> int:
        return self.words.shape[0]

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        """Teacher feature map (N, C, H, W) -> L1-normalised bags of words (N, K)."""
        return bow_targets(fmap, self.words.to(fmap.device), assign=self.assign, pool=self.pool,
                           binary=self.binary, border=self.border, inv_delta=self.inv_delta,
                           mean_min_dist=self.mean_min_dist.to(fmap.device))

    def extra_repr(self) -> str:
        return (f"words={tuple(self.words.shape)}, layer={self.layer!r}, border={self.border}, "
                f"assign={self.assign}, pool={self.pool}, binary={self.binary}, inv_delta={self.inv_delta}")


def build_vocabulary(teacher: nn.Module, loader, layer: str, num_words: int, *, border: int = 1,
                     max_vectors: int = 100_000, seed: int = 0, iters: int = 50, solver: str = "auto",
                     device="cpu", progress: bool = False, backend: str | None = None, **target_options) -> Vocabulary:
    """k-means over ``teacher``'s dense features at ``layer``; ``target_options`` (assign, pool,
    binary, inv_delta) go to the Vocabulary. ``solver``: k-means's ("faiss", "torch", "auto";
    ``backend=`` is its old name, deprecated).

    Under DDP rank 0 clusters its vectors and broadcasts the words, and the mean nearest-word
    distance is averaged over ranks, so all ranks hold one vocabulary (given the same unsharded
    loader, as the miniature does, every rank also samples the same vectors).
    """
    solver = renamed_keyword("build_vocabulary", "backend", "solver", backend, solver, "auto")
    if num_words < 2:
        raise ValueError(f"num_words must be >= 2, got {num_words}")
    features = TeacherLayer(teacher, layer)
    vectors = sample_vectors(features, loader, max_vectors=max_vectors, border=border, seed=seed, device=device,
                             progress=progress)
    if vectors.shape[0] < num_words:
        raise ValueError(f"{vectors.shape[0]} feature vectors cannot make {num_words} words: use more data, "
                         "fewer words or a larger max_vectors")
    rank, world = _dist_world()
    words = torch.zeros(num_words, vectors.shape[1])
    if rank == 0:
        words = kmeans(vectors, num_words, iters=iters, seed=seed, solver=solver).centroids.float().cpu()
    if world > 1:
        comm = words.to(device)
        torch.distributed.broadcast(comm, src=0)
        words = comm.cpu()
    mean_min = mean_nearest_distance(vectors, words)
    if world > 1:   # ranks given different shards agree on one temperature scale
        comm = torch.tensor([mean_min], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(comm)
        mean_min = comm.item() / world
    return Vocabulary(words, mean_min, layer=layer, border=border, **target_options)


class BoWTeacher(nn.Module):
    """Frozen teacher + vocabulary: images -> bag-of-words targets (N, K)."""

    def __init__(self, teacher: nn.Module, vocabulary: Vocabulary):
        super().__init__()
        self.vocabulary = vocabulary
        self._features = TeacherLayer(teacher, vocabulary.layer)
        self.teacher = teacher

    def train(self, mode: bool = True):
        # The teacher stays in eval mode whatever its holder does (BN running stats are frozen).
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vocabulary(self._features(x))
