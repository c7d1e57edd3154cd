"""Few-shot evaluation of frozen features: N-way K-shot episodes classified by cosine prototypes.

Each episode draws n_way classes, then k_shot support and n_query query rows per class, without
replacement. Features are L2-normalised; a class prototype is the mean of its support features;
a query goes to the prototype of highest cosine similarity. The result is the mean episode accuracy
and its 95% interval half-width, 1.96 * std / sqrt(episodes) (std with ddof=1).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

# Episodes scored in one batched matmul; bounds memory at (chunk * n_way * n_query * d) floats.
_EPISODE_CHUNK = 64


def _episode_indices(labels, n_way, k_shot, n_query, episodes, seed):
    """(episodes, n_way, k_shot + n_query) row indices; column block j of an episode is its class j."""
    classes, counts = np.unique(labels, return_counts=True)
    per = k_shot + n_query
    eligible = classes[counts >= per]
    if len(eligible) < n_way:
        raise ValueError(f"{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} classes with at least "
                         f"{per} rows each; only {len(eligible)} of {len(classes)} classes have that many")
    rows_of = {c: np.flatnonzero(labels == c) for c in eligible}
    rng = np.random.default_rng(seed)
    out = np.empty((episodes, n_way, per), dtype=np.int64)
    for e in range(episodes):
        for j, c in enumerate(rng.choice(eligible, size=n_way, replace=False)):
            out[e, j] = rng.choice(rows_of[c], size=per, replace=False)
    return out


def fewshot_eval(feats, labels, *, n_way=10, k_shot=1, n_query=15, episodes=500, seed=0, device=None):
    """Mean accuracy and 95% interval half-width (fractions) over seeded N-way K-shot episodes."""
    if isinstance(feats, np.ndarray):
        feats = torch.from_numpy(feats)
    if not isinstance(feats, torch.Tensor) or feats.ndim != 2:
        raise ValueError(f"feats must be a 2-D (n, d) tensor or array, got {getattr(feats, 'shape', type(feats))}")
    labels = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if labels.ndim != 1 or len(labels) != feats.shape[0]:
        raise ValueError(f"labels must be 1-D with one label per row ({feats.shape[0]}), got shape {labels.shape}")
    for name, v, lo in (("n_way", n_way, 2), ("k_shot", k_shot, 1), ("n_query", n_query, 1),
                        ("episodes", episodes, 1)):
        if not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    dev = torch.device(device) if device is not None else feats.device
    f = F.normalize(feats.detach().to(dev, torch.float32), dim=1)
    if not torch.isfinite(f).all():
        raise ValueError("feats has non-finite values (NaN or inf)")

    idx = torch.from_numpy(_episode_indices(labels, n_way, k_shot, n_query, episodes, seed))
    target = torch.arange(n_way, device=dev).repeat_interleave(n_query)  # query order: class-major
    accs = []
    for s in range(0, episodes, _EPISODE_CHUNK):
        block = f[idx[s:s + _EPISODE_CHUNK].to(dev)]               # (E, n_way, k+q, d)
        protos = F.normalize(block[:, :, :k_shot].mean(2), dim=2)  # (E, n_way, d)
        queries = block[:, :, k_shot:].flatten(1, 2)                # (E, n_way*q, d)
        pred = torch.bmm(queries, protos.transpose(1, 2)).argmax(2)
        accs.append((pred == target).float().mean(1).cpu())
    accs = torch.cat(accs).double().numpy()
    mean = float(accs.mean())
    ci95 = 1.96 * float(accs.std(ddof=1)) / math.sqrt(episodes) if episodes > 1 else float("nan")
    return mean, ci95
