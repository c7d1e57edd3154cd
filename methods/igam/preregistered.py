"""IGAM's second version (issue 27), as pre-registered in methods/README.md ("Second version").

Arms: ce, igam (robust teacher), igam_plain (a plain-CE teacher), gradnorm (CE + lambda ||J_s||^2),
ldiff (CE + gamma L_diff, robust teacher). All train on the fit images (``methods.common.split``).

- ``run_chunk(kind, "tune", seed)``: every grid value of every weighted arm, scored on the validation
  images of 5-9 (clean and PGD-20 at eps 0.1); ``choose(tune_chunks)`` picks each arm's weight by the
  pre-registered rule.
- ``run_chunk(kind, "eval", seed, weights=choice)``: the chosen weights, scored once on the test
  images: clean, FGSM, PGD-20 (per-image worst case over an adder's grad modes) and the strong attack
  (PGD-100, 5 restarts, CE and CW margin, worst case per image and mode), at each eps.
- ``merge_chunks(eval_chunks)``: per arm and seed, the paired claims C1 (igam - ce) and C2 (igam - igam_plain)
  on the strong attack at eps 0.1, with ``methods.common.stats.paired_difference``; a table and one
  summary PNG.
Each chunk is one (kind, phase, seed): its JSON is written as soon as it ends.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from typing import Optional, Sequence


import torch

from addernet.train import seed_everything
from methods.common.chunks import check_chunks, finish_chunk, finish_merge
from methods.common.split import split_loaders
from methods.common.stats import describe, paired_difference

from . import experiment as E
from .evaluation import _batches as first_images, robustness, square_accuracy, strong_pgd
from .teacher import finetune_head, robust_teacher

ARMS = ("ce", "igam", "igam_plain", "gradnorm", "ldiff")
WEIGHTED = ("igam", "igam_plain", "gradnorm", "ldiff")
GRID = (0.005, 0.05, 0.5, 1.0)      # 0.005: the official gamma 10's equivalent at batch 32 (0.0049)
TUNING_SEEDS = (100, 101)
EVAL_SEEDS = tuple(range(8))
PRIMARY_EPS = 0.1
CLEAN_TOLERANCE = 5.0               # points of validation clean accuracy below ce's still allowed
CLAIMS = {"C1": ("igam", "ce"), "C2": ("igam", "igam_plain")}
# Secondary cells of the evaluation phase (description only, pre-registered in methods/README.md):
SQUARE = {"eps": 0.1, "queries": 1000, "images": 200}    # gradient-free check on masking
COSINE_IMAGES = 64                  # student-teacher input-gradient cosine on the first test images
EPS_HIGH = 0.3                      # ce, and igam with a teacher PGD-trained at eps 0.3 ("igam_t03")
TEACHER_OF = {"igam_plain": "plain", "igam_t03": "robust03"}   # every other arm: "robust"
TOO_SMALL = "quick run: too small to test the claim (1 seed, a few epochs, tens of images)"
PHASES = ("tune", "eval")


def config(kind: str, quick: bool = False) -> E.Config:
    """The pre-registered training recipe: conv, the official-schedule shape (128 epochs at batch 32, the
    extra terms for the last 16, shared CE warm-up); adder, the 6-epoch cosine run. ``quick``: a smoke run."""
    if kind not in ("conv", "adder"):
        raise ValueError(f"kind must be 'conv' or 'adder', got {kind!r}")
    if kind == "conv":
        cfg = E.official_config(quick=quick)
    else:
        cfg = dataclasses.replace(E.quick_config() if quick else E.Config(), adapter_teacher=None,
                                  adder_epochs=1 if quick else None)
    cfg = dataclasses.replace(cfg, kinds=(kind,), adder_seeds=None, strong_attack=(100, 5), progress=False)
    if quick:
        cfg = dataclasses.replace(cfg, eval_samples=40, strong_attack=(5, 1), limit_batches=4, head_epochs=1)
        cfg.teacher = dataclasses.replace(cfg.teacher, epochs=1, limit_batches=4)
    return cfg


def _loaders(classes, cfg: E.Config, seed: int, evaluate_on: str, batch: Optional[int] = None):
    train, held, _ = split_loaders("mnist5k", cfg.data_root, batch or cfg.batch_size, evaluate_on=evaluate_on,
                                   seed=seed, classes=list(classes))
    return train, held


def teachers(cfg: E.Config, cache: Optional[str], log=None, high_eps: bool = False) -> dict:
    """{"robust", "plain"}: LeNet-5-BN on the fit images of 0-4, PGD-trained or plain CE (same epochs,
    optimiser and seed), each with its logit layer fine-tuned on the fit images of 5-9. ``high_eps``:
    also "robust03", PGD-trained at eps 0.3, otherwise identical (the secondary eps-0.3 cells)."""
    out = {}
    todo = [("robust", cfg.teacher.eps), ("plain", 0.0)] + [("robust03", EPS_HIGH)] * high_eps
    for name, eps in todo:
        tcfg = dataclasses.replace(cfg.teacher, eps=eps, batch_size=cfg.batch_size)
        # the fit part only: the cache key records it, so a first-version teacher is never reused
        tcfg = dataclasses.replace(tcfg, data="mnist5k:fit")
        src = _loaders(E.SOURCE_CLASSES, cfg, tcfg.seed, "val")[0]
        base = robust_teacher(tcfg, lambda: E._build(tcfg.model, tcfg.kind, len(E.SOURCE_CLASSES)), (src, None),
                              cache_dir=cache, device=cfg.device, log=log)
        tgt = _loaders(E.TARGET_CLASSES, cfg, 0, "val")[0]
        out[name] = finetune_head(base, (tgt, None), len(E.TARGET_CLASSES), epochs=cfg.head_epochs, lr=cfg.head_lr,
                                  device=cfg.device, limit_batches=cfg.limit_batches).to(cfg.device)
    return out


def _train_arms(kind, seed, cfg, arms_weights, teach, evaluate_on, log):
    """Train every (arm, weight) of one seed; yields (arm, weight, model, seconds, disc_updates)."""
    loaders = _loaders(E.TARGET_CLASSES, cfg, seed, evaluate_on,
                       batch=cfg.student_batch_size or cfg.batch_size)
    with tempfile.TemporaryDirectory(prefix="igam-v2-") as scratch:
        warm = None
        if kind == "conv" and cfg.warmup_epochs > 0:
            t0 = time.perf_counter()
            warm = E.train_warmup(kind, seed, cfg, loaders, os.path.join(scratch, "warm"))
            log(f"{kind} seed {seed}: shared CE warm-up {time.perf_counter() - t0:.0f} s")
        for arm, weight in arms_weights:
            t0 = time.perf_counter()
            student = "igam" if arm == "igam_t03" else arm      # the same objective, another teacher
            acfg = cfg if weight is None else dataclasses.replace(cfg, weights={student: weight})
            teacher = teach[TEACHER_OF.get(arm, "robust")]
            info = {}
            model = E.train_student(student, kind, seed, teacher, acfg, loaders, info=info, warm_start=warm)
            yield arm, weight, model, time.perf_counter() - t0, info.get("disc_updates", 0), loaders[1]


def run_chunk(kind: str, phase: str, seed: int, *, arms: Sequence[str] = ARMS, weights: Optional[dict] = None,
              quick: bool = False, out: Optional[str] = None, json_path: Optional[str] = None, log=print) -> dict:
    """One chunk of the pre-registered run: (kind, phase, seed). ``weights``: the choice of the tuning
    phase ({arm: value}), required for phase "eval". Writes ``json_path`` when given."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    bad = [a for a in arms if a not in ARMS]
    if bad or not arms:
        raise ValueError(f"arms must be among {', '.join(ARMS)}, got {list(arms)}")
    if phase == "eval":
        missing = [a for a in arms if a in WEIGHTED and a not in (weights or {})]
        if missing:
            raise ValueError(f"phase 'eval' needs the tuned weights of {missing} (the tuning phase's choice)")
    log = log or (lambda _m: None)
    cfg = config(kind, quick)
    t_start = time.perf_counter()
    seed_everything(0)
    evaluating = phase == "eval"
    high = evaluating and "ce" in arms and "igam" in arms        # the secondary eps-0.3 pair
    teach = teachers(cfg, os.path.join(out, "cache") if out else None, log=log, high_eps=high)
    if phase == "tune":
        plan = [("ce", None)] * ("ce" in arms) + [(a, w) for a in arms if a in WEIGHTED for w in GRID]
    else:
        plan = [(a, (weights or {}).get(a)) for a in arms] + ([("igam_t03", weights["igam"])] if high else [])
    modes = E._adder_setup(cfg)[1]
    square = dict(SQUARE, queries=20, images=40) if quick else SQUARE
    transfer = _transfer_attack(cfg, log) if evaluating else None
    cells = []
    for arm, weight, model, seconds, d_updates, held in _train_arms(kind, seed, cfg, plan, teach,
                                                                     "test" if evaluating else "val", log):
        if arm == "igam_t03":
            eps, strong_eps = (EPS_HIGH,), (EPS_HIGH,)
        elif evaluating:
            eps = strong_eps = tuple(cfg.eps) + ((EPS_HIGH,) if high and arm == "ce" else ())
        else:
            eps, strong_eps = (PRIMARY_EPS,), ()
        r = robustness(model, held, eps=eps, steps=cfg.pgd_steps, fgsm_eps=cfg.headline_eps, seed=seed,
                       device=cfg.device, limit=cfg.eval_samples, adder_grad_modes=modes,
                       transfer=transfer)
        cell = {"arm": arm, "weight": weight, "kind": kind, "seed": seed, "train_seconds": round(seconds, 1),
                "disc_updates": d_updates, "clean": 100 * r["clean"], "fgsm": 100 * r["fgsm"],
                "pgd20": {str(e): 100 * a for e, a in r["pgd"].items()},
                "pgd20_by_mode": {m: {str(e): 100 * a for e, a in d.items()} for m, d in r["pgd_by_mode"].items()},
                "degenerate": r["degenerate"], "samples": r["samples"]}
        if evaluating:
            steps, restarts = cfg.strong_attack
            cell["strong"] = {str(e): 100 * strong_pgd(model, held, eps=e, steps=steps, restarts=restarts, seed=seed,
                                                       device=cfg.device, limit=cfg.eval_samples,
                                                       adder_grad_modes=modes) for e in strong_eps}
            if arm != "igam_t03":
                cell["transfer"] = 100 * r["transfer"]
                cell["square"] = {"eps": square["eps"], "queries": square["queries"], "images": square["images"],
                                  "accuracy": 100 * square_accuracy(model, held, eps=square["eps"],
                                                                    queries=square["queries"],
                                                                    limit=square["images"], seed=seed,
                                                                    device=cfg.device)}
                x_cos, y_cos = (torch.cat(t) for t in zip(*first_images(held, cfg.device, COSINE_IMAGES)))
                cell["grad_cosine"] = E.grad_cosine(model, teach["robust"], x_cos, y_cos, target=cfg.target)
        cells.append(cell)
        primary = str(EPS_HIGH if arm == "igam_t03" else PRIMARY_EPS)
        log(f"{kind} {phase} seed {seed} {arm}" + ("" if weight is None else f" w={weight}")
            + f": clean {cell['clean']:.1f} pgd20@{primary} {cell['pgd20'][primary]:.1f}"
            + (f" strong@{primary} {cell['strong'][primary]:.1f}" if "strong" in cell else "")
            + (f" square@0.1 {cell['square']['accuracy']:.1f}" if "square" in cell else "")
            + (" DEGENERATE (constant predictor)" if cell["degenerate"] else ""))
    result = {"method": "igam", "version": 2, "kind": kind, "phase": phase, "seed": seed, "quick": quick,
              "weights": weights, "cells": cells, "config": E._config_dict(cfg, *E._adder_setup(cfg))}
    return finish_chunk(result, t_start=t_start, note=TOO_SMALL, json_path=json_path, log=log)


def _transfer_attack(cfg: E.Config, log):
    """The transfer attack's examples, as in the first version, but its plain source CNN trains on the
    fit images of 5-9 only (the validation images stay unseen) and attacks the test images."""
    t0 = time.perf_counter()
    train, test = _loaders(E.TARGET_CLASSES, cfg, E.TRANSFER_SEED, "test")
    examples = E.transfer_attack(cfg, train, test)
    log(f"transfer source trained and its examples crafted in {time.perf_counter() - t0:.0f} s")
    return examples


def choose(chunks: Sequence[dict]) -> dict:
    """Each weighted arm's value by the pre-registered rule, from tuning chunks (one per tuning seed):
    the best mean validation PGD-20 @0.1 among the grid values whose mean validation clean accuracy is
    at most CLEAN_TOLERANCE points below ce's; none qualifying: the smallest value; ties: grid order."""
    check_chunks(chunks, "tune")
    cells = [cell for c in chunks for cell in c["cells"]]

    def mean(arm, weight, key):
        vals = [(cell[key][str(PRIMARY_EPS)] if key == "pgd20" else cell[key]) for cell in cells
                if cell["arm"] == arm and cell["weight"] == weight]
        return sum(vals) / len(vals) if vals else None

    ce_clean = mean("ce", None, "clean")
    if ce_clean is None:
        raise ValueError("the tuning chunks have no ce cells to compare clean accuracy with")
    choice, why = {}, {}
    for arm in sorted({cell["arm"] for cell in cells} & set(WEIGHTED)):
        scored = [(w, mean(arm, w, "pgd20"), mean(arm, w, "clean")) for w in GRID]
        ok = [(w, p) for w, p, c in scored if p is not None and c >= ce_clean - CLEAN_TOLERANCE]
        if ok:
            best = max(p for _, p in ok)
            choice[arm] = next(w for w, p in ok if p == best)
        else:
            choice[arm] = GRID[0]
        why[arm] = [{"weight": w, "val_pgd20": p, "val_clean": c} for w, p, c in scored]
    return {"weights": choice, "ce_val_clean": ce_clean, "scores": why,
            "seeds": sorted({c["seed"] for c in chunks})}


def _described(cells, get, digits: int = 1) -> str:
    """describe() of a secondary cell present in every chunk, else "not run" (chunks of an older layout)."""
    try:
        vals = [get(c) for c in cells]
    except KeyError:
        return "not run"
    return describe(vals, digits=digits)


def merge_chunks(chunks: Sequence[dict], *, out: Optional[str] = None) -> dict:
    """The evaluation chunks of one kind: per-arm rows, the claims' paired statistics, a table and a PNG."""
    kind = check_chunks(chunks, "eval")
    seen = [(cell["arm"], cell["seed"]) for c in chunks for cell in c["cells"]]
    if len(seen) != len(set(seen)):
        raise ValueError("the chunks repeat an (arm, seed) cell")
    by = {(cell["arm"], cell["seed"]): cell for c in chunks for cell in c["cells"]}
    seeds = sorted({s for _, s in by})
    key = str(PRIMARY_EPS)

    def series(arm):
        return [by[(arm, s)]["strong"][key] if (arm, s) in by else None for s in seeds]

    claims = {name: {"a": a, "b": b, **paired_difference(series(a), series(b), direction=1)}
              for name, (a, b) in CLAIMS.items()}
    described = {f"{a} - ce": paired_difference(series(a), series("ce"))
                 for a in ("gradnorm", "ldiff", "igam_plain")}
    high = str(EPS_HIGH)
    if any(arm == "igam_t03" for arm, _ in by):
        described[f"igam (eps-{high} teacher) - ce, strong @{high}"] = paired_difference(
            *[[by[(a, s)]["strong"][high] if (a, s) in by else None for s in seeds] for a in ("igam_t03", "ce")])
    rows = []
    for arm in ARMS:
        cells = [by[(arm, s)] for s in seeds if (arm, s) in by]
        if not cells:
            continue
        rows.append({"arm": arm, "seeds": len(cells), "clean": describe([c["clean"] for c in cells]),
                     "strong@0.1": describe([c["strong"][key] for c in cells]),
                     "pgd20@0.1": describe([c["pgd20"][key] for c in cells]),
                     "square@0.1": _described(cells, lambda c: c["square"]["accuracy"]),
                     "transfer": _described(cells, lambda c: c["transfer"]),
                     "grad cosine": _described(cells, lambda c: c["grad_cosine"], digits=3),
                     "degenerate seeds": ", ".join(str(c["seed"]) for c in cells if c["degenerate"]) or "none"})
    result = {"method": "igam", "version": 2, "kind": kind, "seeds": seeds, "rows": rows}
    return finish_merge(chunks, result, cols=["arm", "seeds", "clean", "pgd20@0.1", "strong@0.1", "square@0.1", "transfer",
                              "grad cosine", "degenerate seeds"],
                        note=TOO_SMALL, claims=claims, described=described, out=out,
                        png=f"igam_v2_{kind}_summary.png",
                        title=f"IGAM v2 ({kind}): strong-attack accuracy @0.1, paired differences per seed")
