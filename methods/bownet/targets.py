"""Bag-of-visual-words targets: quantise each position of a teacher feature map to the vocabulary,
then pool the codes over positions into one K-bin histogram per image.

Distances are squared Euclidean, as in BoWNet and OBoW. Soft assignment follows OBoW: the codes
are softmax(-d * inv_delta / mean_min_dist) over words, so the temperature is relative to the mean
distance from a feature to its nearest word (a frozen teacher makes that mean a constant of the
vocabulary, which OBoW tracks with an EMA only because its teacher moves).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

ASSIGN = ("hard", "soft")
POOL = ("max", "avg")


def drop_border(fmap: torch.Tensor, border: int = 1) -> torch.Tensor:
    """(N, C, H, W) without ``border`` positions on each side; OBoW drops 1 (zero-padded edges give
    features that describe the padding, not the image)."""
    if fmap.dim() != 4:
        raise ValueError(f"expected a feature map (N, C, H, W), got shape {tuple(fmap.shape)}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    if border == 0:
        return fmap
    h, w = fmap.shape[-2:]
    if h <= 2 * border or w <= 2 * border:
        raise ValueError(f"a {h}x{w} feature map has nothing left after dropping a border of {border}")
    return fmap[:, :, border:h - border, border:w - border]


def squared_distances(fmap: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) features, (K, C) words -> (N, K, H, W) squared Euclidean distances."""
    if fmap.dim() != 4 or words.dim() != 2 or fmap.shape[1] != words.shape[1]:
        raise ValueError(f"feature map {tuple(fmap.shape)} and words {tuple(words.shape)}: expected "
                         "(N, C, H, W) and (K, C) with the same C")
    f = fmap.float()
    w = words.float()
    d = (f.pow(2).sum(1, keepdim=True) - 2 * torch.einsum("nchw,kc->nkhw", f, w)
         + w.pow(2).sum(1)[None, :, None, None])
    return d.clamp_min_(0)  # the expansion can dip below 0 by rounding


def assignment_codes(dist: torch.Tensor, assign: str = "hard", *, inv_delta: float = 15.0,
                     mean_min_dist: float | torch.Tensor | None = None) -> torch.Tensor:
    """(N, K, H, W) distances -> (N, K, H, W) codes that sum to 1 over K at every position.

    hard: one-hot of the nearest word. soft: softmax(-dist * inv_delta / mean_min_dist), i.e. a
    temperature of mean_min_dist / inv_delta; as inv_delta grows the codes tend to the hard ones.
    """
    if assign == "hard":
        return F.one_hot(dist.argmin(1), dist.shape[1]).permute(0, 3, 1, 2).to(dist.dtype)
    if assign == "soft":
        if inv_delta <= 0:
            raise ValueError(f"inv_delta must be > 0, got {inv_delta}")
        if mean_min_dist is None:
            mean_min_dist = dist.amin(1).mean()
        scale = torch.as_tensor(mean_min_dist, dtype=dist.dtype, device=dist.device).clamp_min(1e-12)
        return torch.softmax(-dist * (inv_delta / scale), dim=1)
    raise ValueError(f"assign must be one of {ASSIGN}, got {assign!r}")


def pool_codes(codes: torch.Tensor, pool: str = "max", *, binary: bool = False, l1: bool = True) -> torch.Tensor:
    """(N, K, H, W) codes -> (N, K) bag of words.

    pool: 'max' (OBoW's default) or 'avg' over positions. binary: a word counts 1 if it is the
    nearest word somewhere in the image (presence), else 0. l1: divide by the sum, so the bag is
    a distribution (what the soft cross-entropy needs).
    """
    if codes.dim() != 4:
        raise ValueError(f"expected codes (N, K, H, W), got shape {tuple(codes.shape)}")
    if binary:
        k = codes.shape[1]
        present = F.one_hot(codes.argmax(1).flatten(1), k).amax(1)
        bag = present.to(codes.dtype)
    elif pool == "max":
        bag = codes.amax((2, 3))
    elif pool == "avg":
        bag = codes.mean((2, 3))
    else:
        raise ValueError(f"pool must be one of {POOL}, got {pool!r}")
    return F.normalize(bag, p=1, dim=1) if l1 else bag


def bow_targets(fmap: torch.Tensor, words: torch.Tensor, *, assign: str = "hard", pool: str = "max",
                binary: bool = False, l1: bool = True, border: int = 1, inv_delta: float = 15.0,
                mean_min_dist: float | torch.Tensor | None = None) -> torch.Tensor:
    """A teacher feature map (N, C, H, W) and the vocabulary (K, C) -> bags of words (N, K)."""
    dist = squared_distances(drop_border(fmap, border), words)
    codes = assignment_codes(dist, assign, inv_delta=inv_delta, mean_min_dist=mean_min_dist)
    return pool_codes(codes, pool, binary=binary, l1=l1)
