"""BoWNet's second version (issue 27), as pre-registered in methods/README.md ("Second version").

Self-supervised training (RotNet, vocabulary, BoWNet) on the fit images of digits 0-4, labels unused;
5-way few-shot (cosine prototypes) on digits 5-9. Arms: ``random``; ``rotnet`` (the first version's,
no g(x)); ``rotnet_g`` (trained on g(x), then rotated); ``bownet`` (vocabulary from ``rotnet_g``);
``bownet_randteacher`` (vocabulary from a random-init teacher). Probes at several depths.

- ``run_chunk(kind, "tune", seed)``: every (words, crop) of the grid for ``bownet`` and
  ``bownet_randteacher``, ``rotnet_g`` for every crop, ``random`` and ``rotnet``; 5-way 5-shot on
  the 5-9 validation images at every layer. ``choose`` picks (words, crop) and each arm's layer.
- ``run_chunk(kind, "eval", seed, choice=...)``: the chosen setting, scored on the 5-9 test images
  (every layer recorded; the chosen layer's score is the endpoint).
- ``merge_chunks``: claim C4 (bownet - rotnet_g, 5-shot), the degeneracy check (rotnet_g - random) and the
  rest as description; a table and one summary PNG.
"""
from __future__ import annotations

import time
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from addernet.data import get_dataset
from addernet.models import feature_extractor, recalibrate_bn
from addernet.train import seed_everything
from methods.common import extract_features, fewshot_eval
from methods.common.backbone import build_backbone
from methods.common.chunks import check_chunks, finish_chunk, finish_merge
from methods.common.split import validation_split
from methods.common.stats import describe, paired_difference

from .perturb import Perturbation
from .pipeline import random_init, train_bownet, train_rotnet

SOURCE = (0, 1, 2, 3, 4)
TARGET = (5, 6, 7, 8, 9)
ARMS = ("random", "rotnet", "rotnet_g", "bownet", "bownet_randteacher")
WORDS = (32, 128, 512)
CROPS = (0.5, 0.8)
LAYERS = ("pool1", "pool2", "relu3", "features")
# The data sets and their networks: mnist5k (28x28) on LeNet-5-BN, scikit-learn's digits (8x8) on TinyNet
# (description only: is the rotation pretext degenerate there too?). (model, vocabulary layer, border, probe layers)
SETUPS = {"mnist5k": ("lenet5_bn", "pool2", 0, LAYERS),
          "digits": ("tinynet", "features.6", 1, ("features.2", "features.6", "features"))}
TUNING_SEEDS = (100, 101)
EVAL_SEEDS = tuple(range(8))
PHASES = ("tune", "eval")
TOO_SMALL = "quick run: too small to test the claim (1 seed, 2 epochs a stage, tens of episodes)"
RECIPE = dict(rotnet_epochs=4, bownet_epochs=20, lr=0.05, weight_decay=5e-4, batch_size=128, episodes=600,
              max_vectors=50_000, kmeans_iters=30, limit_batches=None)
QUICK = dict(RECIPE, rotnet_epochs=1, bownet_epochs=1, episodes=30, max_vectors=5_000, kmeans_iters=5,
             limit_batches=3)


def _split(classes, held: str, data: str = "mnist5k"):
    train = get_dataset(data, None, train=True, augment=False, normalize=False)
    fit_part, val_part = validation_split(train)
    other = val_part if held == "val" else get_dataset(data, None, train=False, augment=False, normalize=False)
    return get_dataset(fit_part, classes=list(classes)), get_dataset(other, classes=list(classes))


def _scores(model, ssl_plain, held_loader, seed, episodes, layers) -> dict:
    """{layer: {"5shot", "1shot"}} in percent: 5-way episodes on the held-out 5-9 images, after BN
    statistics are re-estimated on the clean 0-4 fit images (every arm alike)."""
    backbone = getattr(model, "backbone", model)
    recalibrate_bn(backbone, ssl_plain, batches=50)
    fx = feature_extractor(backbone, list(layers))   # "features" is a feature point, not a module
    backbone.eval()
    out = {}
    for layer in layers:
        f, y = extract_features(lambda x, layer=layer: fx(x)[layer], held_loader)
        out[layer] = {f"{k}shot": 100 * fewshot_eval(f, y, n_way=5, k_shot=k, n_query=15, episodes=episodes,
                                                     seed=seed)[0] for k in (5, 1)}
    return out


def run_chunk(kind: str, phase: str, seed: int, *, choice: Optional[dict] = None, quick: bool = False,
              json_path: Optional[str] = None, data: str = "mnist5k", log=print) -> dict:
    """One (kind, phase, seed) chunk. ``choice``: ``choose``'s result (phase "eval"). ``data``: a key of
    ``SETUPS``."""
    if data not in SETUPS:
        raise ValueError(f"data must be one of {', '.join(SETUPS)}, got {data!r}")
    model_name, vocab_layer, border, layers = SETUPS[data]
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if kind not in ("conv", "adder"):
        raise ValueError(f"kind must be 'conv' or 'adder', got {kind!r}")
    if phase == "eval" and not (choice and {"words", "crop", "layers"} <= set(choice)):
        raise ValueError("phase 'eval' needs the tuning phase's choice (words, crop, layers)")
    r = QUICK if quick else RECIPE
    log = log or (lambda _m: None)
    ssl_set = _split(SOURCE, "val", data)[0]
    held_set = _split(TARGET, "val" if phase == "tune" else "test", data)[1]
    gen = torch.Generator().manual_seed(seed)
    ssl = DataLoader(ssl_set, batch_size=r["batch_size"], shuffle=True, generator=gen)
    ssl_plain = DataLoader(ssl_set, batch_size=256, shuffle=False)
    held = DataLoader(held_set, batch_size=256, shuffle=False)
    shape = tuple(ssl_set[0][0].shape)

    def make():
        return build_backbone(model_name, num_classes=len(SOURCE), kind=kind, in_channels=shape[0])

    common = dict(seed=seed, progress=False, log=None, limit_batches=r["limit_batches"])
    if phase == "tune":
        words, crops = (WORDS[:1], CROPS[-1:]) if quick else (WORDS, CROPS)
    else:
        words, crops = (int(choice["words"]),), (float(choice["crop"]),)
    t_start = time.perf_counter()
    cells = []

    def add(arm, model, t0, w=None, crop=None):
        cell = {"arm": arm, "kind": kind, "seed": seed, "words": w, "crop": crop,
                "layers": _scores(model, ssl_plain, held, seed, r["episodes"], layers),
                "seconds": round(time.perf_counter() - t0, 1)}
        cells.append(cell)
        best = max(cell["layers"], key=lambda k: cell["layers"][k]["5shot"])
        log(f"{kind} {phase} seed {seed} {arm} words={w} crop={crop}: 5-shot "
            + " ".join(f"{k} {v['5shot']:.1f}" for k, v in cell["layers"].items()) + f" (best {best})")

    t0 = time.perf_counter()
    seed_everything(seed)
    rnd = random_init(make(), ssl_plain)
    add("random", rnd, t0)
    t0 = time.perf_counter()
    seed_everything(seed)
    add("rotnet", train_rotnet(make(), (ssl, None), epochs=r["rotnet_epochs"], lr=r["lr"],
                               weight_decay=r["weight_decay"], **common), t0)
    for crop in crops:
        g = Perturbation.for_data(shape[0], data, crop_scale=(crop, 1.0))
        t0 = time.perf_counter()
        seed_everything(seed)
        rot_g = train_rotnet(make(), (ssl, None), epochs=r["rotnet_epochs"], lr=r["lr"],
                             weight_decay=r["weight_decay"], perturb=g, **common)
        add("rotnet_g", rot_g, t0, crop=crop)
        for w in words:
            for arm, teacher in (("bownet", rot_g), ("bownet_randteacher", rnd)):
                t0 = time.perf_counter()
                seed_everything(seed)
                student, _ = train_bownet(teacher, make(), (ssl, None), layer=vocab_layer, num_words=w,
                                          epochs=r["bownet_epochs"], input_shape=shape, perturb=g, lr=r["lr"],
                                          weight_decay=r["weight_decay"], border=border,
                                          max_vectors=r["max_vectors"], kmeans_iters=r["kmeans_iters"],
                                          vocab_loader=ssl_plain, **common)
                add(arm, student, t0, w=w, crop=crop)
    result = {"method": "bownet", "version": 2, "data": data, "kind": kind, "phase": phase, "seed": seed,
              "quick": quick, "choice": choice, "cells": cells, "recipe": r}
    return finish_chunk(result, t_start=t_start, note=TOO_SMALL, json_path=json_path, log=log)


def _mean(vals):
    return sum(vals) / len(vals)


def choose(chunks: Sequence[dict]) -> dict:
    """(words, crop): the best mean over tuning seeds of bownet's validation 5-shot at its best layer;
    then each arm's layer: the best mean validation 5-shot at that setting (ties: grid order)."""
    check_chunks(chunks, "tune")
    cells = [cell for c in chunks for cell in c["cells"]]

    def at(arm, w=None, crop=None):
        return [c for c in cells if c["arm"] == arm and c["words"] == w and c["crop"] == crop]

    settings = [(w, crop) for crop in CROPS for w in WORDS if at("bownet", w, crop)]
    if not settings:
        raise ValueError("the tuning chunks have no bownet cells")
    layer_names = list(cells[0]["layers"])
    score = {s: max(_mean([c["layers"][layer]["5shot"] for c in at("bownet", *s)]) for layer in layer_names)
             for s in settings}
    best = max(score.values())
    words, crop = next(s for s in settings if score[s] == best)
    where = {"random": (None, None), "rotnet": (None, None), "rotnet_g": (None, crop), "bownet": (words, crop),
             "bownet_randteacher": (words, crop)}
    layers = {}
    for arm, (w, cr) in where.items():
        cs = at(arm, w, cr)
        if cs:
            means = {layer: _mean([c["layers"][layer]["5shot"] for c in cs]) for layer in layer_names}
            top = max(means.values())
            layers[arm] = next(layer for layer in layer_names if means[layer] == top)
    return {"words": words, "crop": crop, "layers": layers, "setting_scores": {f"{w}/{c}": v for (w, c), v in
                                                                               score.items()},
            "seeds": sorted({c["seed"] for c in chunks})}


def merge_chunks(chunks: Sequence[dict], *, out: Optional[str] = None) -> dict:
    """Evaluation chunks of one kind: claim C4, the degeneracy check, description, a table and a PNG."""
    kind = check_chunks(chunks, "eval")
    data = chunks[0].get("data", "mnist5k")
    layers = chunks[0]["choice"]["layers"]
    by = {}
    for c in chunks:
        for cell in c["cells"]:
            if (cell["arm"], cell["seed"]) in by:
                raise ValueError(f"the chunks repeat the cell {(cell['arm'], cell['seed'])}")
            by[(cell["arm"], cell["seed"])] = cell
    seeds = sorted({s for _, s in by})

    def series(arm, shots="5shot"):
        return [by[(arm, s)]["layers"][layers[arm]][shots] if (arm, s) in by else None for s in seeds]

    claims = {"C4": {"a": "bownet", "b": "rotnet_g", **paired_difference(series("bownet"), series("rotnet_g"))}}
    described = {"rotnet_g - random (degenerate pretext?)": paired_difference(series("rotnet_g"), series("random")),
                 "bownet - bownet_randteacher": paired_difference(series("bownet"), series("bownet_randteacher")),
                 "rotnet - random": paired_difference(series("rotnet"), series("random"))}
    deg = described["rotnet_g - random (degenerate pretext?)"]
    degenerate = None if deg["holds"] is None else not deg["holds"]
    rows = [{"arm": a, "layer": layers.get(a), "seeds": sum(v is not None for v in series(a)),
             "5-shot": describe([v for v in series(a) if v is not None]),
             "1-shot": describe([v for v in series(a, "1shot") if v is not None])} for a in ARMS if a in layers]
    result = {"method": "bownet", "version": 2, "data": data, "kind": kind, "seeds": seeds, "rows": rows,
              "rotation_pretext_degenerate": degenerate}
    suffix = "" if data == "mnist5k" else f"_{data}"
    return finish_merge(chunks, result, cols=["arm", "layer", "seeds", "5-shot", "1-shot"], note=TOO_SMALL,
                        claims=claims, described=described, out=out, png=f"bownet_v2_{kind}{suffix}_summary.png",
                        title=f"BoWNet v2 ({data}, {kind}): 5-way 5-shot on digits 5-9, paired differences per seed")
