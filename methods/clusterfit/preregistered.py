"""ClusterFit's second version (issue 27), as pre-registered in methods/README.md ("Second version").

Transfer, as the paper claims it: N_pre (noisy labels p, N_cf's augmentation), the clusters and N_cf
all come from the fit images of digits 0-4; the probes score digits 5-9 (transfer) and, as the first
version's same-task control, digits 0-4. Every cell has the random-id control N_cf_rand.

- ``run_chunk(kind, "tune", seed)``: every K of the grid for every p, scored by the 0-4 probe on the
  0-4 validation images; ``choose`` picks K per p by the best mean over the tuning seeds.
- ``run_chunk(kind, "eval", seed, ks=choice)``: N_pre, N_cf, N_cf_rand at the chosen K, and a
  random-init network, probed on the test images (5-9 transfer, 0-4 same task).
- ``merge_chunks``: claim C3 (5-9 probe at p = 0.8, N_cf - N_pre) with ``paired_difference``, description of
  the rest, a table and one summary PNG.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

from torch.utils.data import DataLoader

from addernet.data import dataset_info, get_dataset, make_loaders
from addernet.train import fit, seed_everything
from methods.common.backbone import build_backbone
from methods.common.chunks import check_chunks, finish_chunk, finish_merge
from methods.common.split import validation_split
from methods.common.stats import describe, paired_difference

from .evaluation import probe_accuracy
from .experiment import DIGIT_AUGMENT
from .features import cluster_features
from .fit_cf import AugmentedStep
from .pseudo_labels import OFFICIAL_SEED, make_pseudo_labels, random_pseudo_labels

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)
NOISES = (0.0, 0.5, 0.8)
ADDER_NOISES = (0.8,)
K_GRID = (5, 10, 25, 50, 100)
TUNING_SEEDS = (100, 101)
EVAL_SEEDS = tuple(range(8))
PRIMARY_NOISE = 0.8
PHASES = ("tune", "eval")
TOO_SMALL = "quick run: too small to test the claim (1 seed, a few batches, small K grid)"
RECIPE = dict(pre_epochs=30, cf_epochs=12, batch_size=128, lr=0.1)
QUICK = dict(pre_epochs=1, cf_epochs=1, batch_size=128, lr=0.1, limit_batches=3)


def _parts(classes, normalize: bool, held: str):
    """(fit part, held-out part) of mnist5k restricted to ``classes`` (renumbered 0..4): held "val"
    (the validation images) or "test"."""
    train = get_dataset("mnist5k", None, train=True, augment=False, normalize=normalize)
    fit_part, val_part = validation_split(train)
    other = val_part if held == "val" else get_dataset("mnist5k", None, train=False, augment=False,
                                                        normalize=normalize)
    return (get_dataset(fit_part, classes=list(classes)), get_dataset(other, classes=list(classes)))


def _plain(ds) -> DataLoader:
    return DataLoader(ds, batch_size=500, shuffle=False)


def _train(model, dataset, labels, seed: int, epochs: int, recipe: dict, noise: float = 0.0):
    """N_pre, N_cf and N_cf_rand alike: N_cf's augmentation on pixel-space images, then the dataset's
    normalisation, cross-entropy on ``labels`` (None: the dataset's own, with symmetric noise ``noise``)."""
    info = dataset_info("mnist5k")
    loader, _, _ = make_loaders(dataset, None, recipe["batch_size"], seed=seed, labels=labels, label_noise=noise,
                                noise_seed=seed)
    fit(model, (loader, None), step=AugmentedStep(DIGIT_AUGMENT, info.mean, info.std, seed), epochs=epochs,
        lr=recipe["lr"], seed=seed, out=None, progress=False, log=lambda _m: None,
        limit_batches=recipe.get("limit_batches"))
    return model


def _net(kind: str, classes: int):
    return build_backbone("lenet5_bn", num_classes=classes, kind=kind, in_channels=1)


def run_chunk(kind: str, phase: str, seed: int, *, ks: Optional[dict] = None, quick: bool = False,
              json_path: Optional[str] = None, log=print) -> dict:
    """One (kind, phase, seed) chunk. ``ks``: {str(p): K} from ``choose`` (phase "eval")."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if kind not in ("conv", "adder"):
        raise ValueError(f"kind must be 'conv' or 'adder', got {kind!r}")
    noises = ADDER_NOISES if kind == "adder" else NOISES
    if quick:
        noises = (PRIMARY_NOISE,)
    if phase == "eval":
        missing = [p for p in noises if str(p) not in (ks or {})]
        if missing:
            raise ValueError(f"phase 'eval' needs the chosen K of noise {missing} (the tuning phase's choice)")
    recipe = QUICK if quick else RECIPE
    grid = K_GRID[:2] if quick else K_GRID
    log = log or (lambda _m: None)
    held = "val" if phase == "tune" else "test"
    raw_fit, _ = _parts(SOURCE, False, held)
    src_fit, src_held = _parts(SOURCE, True, held)
    tgt_fit, tgt_held = _parts(TARGET, True, held)
    src_fit_l, src_held_l, tgt_fit_l, tgt_held_l = map(_plain, (src_fit, src_held, tgt_fit, tgt_held))
    t_start = time.perf_counter()
    cells = []

    def probes(model, recalibrate=None):
        same = probe_accuracy(model, src_fit_l, src_held_l, seed=seed, recalibrate=recalibrate)
        if phase == "tune":
            return {"same_task": 100 * same}
        return {"same_task": 100 * same,
                "transfer": 100 * probe_accuracy(model, tgt_fit_l, tgt_held_l, seed=seed, recalibrate=recalibrate)}

    def add(network, noise, k, model, t0, recalibrate=None, **extra):
        cell = {"network": network, "kind": kind, "seed": seed, "noise": noise, "K": k, **probes(model, recalibrate),
                "seconds": round(time.perf_counter() - t0, 1), **extra}
        cells.append(cell)
        log(f"{kind} {phase} seed {seed} {network} p={noise} K={k}: "
            + "  ".join(f"{n} {cell[n]:.1f}" for n in ("same_task", "transfer") if n in cell))

    if phase == "eval":
        t0 = time.perf_counter()
        seed_everything(seed)
        add("random", None, None, _net(kind, len(SOURCE)), t0, recalibrate=True)
    for p in noises:
        t0 = time.perf_counter()
        seed_everything(seed)
        pre = _train(_net(kind, len(SOURCE)), raw_fit, None, seed, recipe["pre_epochs"], recipe, noise=p)
        if phase == "eval":
            add("pre", p, None, pre, t0)
        feats, _, _ = cluster_features(pre, src_fit_l, layer="features")
        for k in (grid if phase == "tune" else (int(ks[str(p)]),)):
            t0 = time.perf_counter()
            pseudo = make_pseudo_labels(feats, k, seed=OFFICIAL_SEED + seed, config={"noise": p, "kind": kind})
            seed_everything(seed)
            cf = _train(_net(kind, k), raw_fit, pseudo.labels, seed, recipe["cf_epochs"], recipe)
            add("cf", p, k, cf, t0)
            if phase == "eval":
                t0 = time.perf_counter()
                rand = random_pseudo_labels(len(raw_fit), k, seed=OFFICIAL_SEED + seed)
                seed_everything(seed)
                cf_rand = _train(_net(kind, k), raw_fit, rand.labels, seed, recipe["cf_epochs"], recipe)
                add("cf_rand", p, k, cf_rand, t0)
    result = {"method": "clusterfit", "version": 2, "kind": kind, "phase": phase, "seed": seed, "quick": quick,
              "ks": ks, "cells": cells, "recipe": recipe}
    return finish_chunk(result, t_start=t_start, note=TOO_SMALL, json_path=json_path, log=log)


def choose(chunks: Sequence[dict]) -> dict:
    """K per noise rate: the best mean over the tuning chunks of the 0-4 probe on the 0-4 validation
    images (ties: the smaller K)."""
    check_chunks(chunks, "tune")
    cells = [cell for c in chunks for cell in c["cells"] if cell["network"] == "cf"]
    ks, scores = {}, {}
    for p in sorted({c["noise"] for c in cells}):
        mean = {}
        for k in sorted({c["K"] for c in cells if c["noise"] == p}):
            vals = [c["same_task"] for c in cells if c["noise"] == p and c["K"] == k]
            mean[k] = sum(vals) / len(vals)
        best = max(mean.values())
        ks[str(p)] = min(k for k, v in mean.items() if v == best)
        scores[str(p)] = mean
    return {"ks": ks, "scores": scores, "seeds": sorted({c["seed"] for c in chunks})}


def merge_chunks(chunks: Sequence[dict], *, out: Optional[str] = None) -> dict:
    """Evaluation chunks of one kind: claim C3, the described differences, a table and a PNG."""
    kind = check_chunks(chunks, "eval")
    by = {}
    for c in chunks:
        for cell in c["cells"]:
            key = (cell["network"], cell["noise"], cell["seed"])
            if key in by:
                raise ValueError(f"the chunks repeat the cell {key}")
            by[key] = cell
    seeds = sorted({s for _, _, s in by})
    noises = sorted({p for _, p, _ in by if p is not None})

    def series(network, p, what="transfer"):
        return [by[(network, p, s)][what] if (network, p, s) in by else None for s in seeds]

    p0 = PRIMARY_NOISE
    claims = {"C3": {"a": "cf", "b": "pre", "noise": p0, **paired_difference(series("cf", p0), series("pre", p0))}}
    described = {}
    for p in noises:
        described[f"p={p}: cf - cf_rand"] = paired_difference(series("cf", p), series("cf_rand", p))
        if p != p0:
            described[f"p={p}: cf - pre"] = paired_difference(series("cf", p), series("pre", p))
        described[f"p={p}: cf - pre (same task)"] = paired_difference(series("cf", p, "same_task"),
                                                                        series("pre", p, "same_task"))
    rows = []
    for network in ("random", "pre", "cf", "cf_rand"):
        for p in ([None] if network == "random" else noises):
            cells = [by[(network, p, s)] for s in seeds if (network, p, s) in by]
            if cells:
                rows.append({"network": network, "noise": "-" if p is None else p,
                             "K": ", ".join(sorted({str(c["K"]) for c in cells})) if cells[0]["K"] else "-",
                             "seeds": len(cells), "transfer 5-9": describe([c["transfer"] for c in cells]),
                             "same task 0-4": describe([c["same_task"] for c in cells])})
    result = {"method": "clusterfit", "version": 2, "kind": kind, "seeds": seeds, "rows": rows}
    return finish_merge(chunks, result, cols=["network", "noise", "K", "seeds", "transfer 5-9", "same task 0-4"],
                        note=TOO_SMALL, claims=claims, described=described, out=out,
                        png=f"clusterfit_v2_{kind}_summary.png",
                        title=f"ClusterFit v2 ({kind}): 5-9 probe accuracy (p={p0} for C3), paired differences per seed")
