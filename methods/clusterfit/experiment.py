"""ClusterFit's label-noise control experiment, in miniature, on the embedded mnist5k.

For each seed: N_pre (LeNet-5-BN) trained on labels with symmetric noise p for long enough to fit
it; its penultimate features clustered with K clusters; N_cf trained from scratch on the cluster
ids; and N_pre, N_cf and a random-init network scored by the same linear probe (true labels, the
4000 train images to fit it, the 1000 held-out images to score it). One row repeats this with
AdderNet networks (N_pre adder, N_cf adder) at one noise rate and one K.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from typing import Optional

import torch

from addernet.train import seed_everything
from methods.common import report
from methods.common.backbone import build_backbone
from methods.common.stats import describe

from .evaluation import plain_loaders, probe_accuracy
from .features import cluster_features
from .fit_cf import CFAugment, train_cf
from .pretrain import train_pre
from .pseudo_labels import OFFICIAL_SEED, make_pseudo_labels

# Digits: no flip (a mirrored 2 is not a 2); one channel, so no saturation; crops down to half the
# area, since the official 8% of a 28x28 digit is a 8x8 patch with no digit left in it.
DIGIT_AUGMENT = CFAugment(crop_scale=(0.5, 1.0), brightness=0.4, contrast=0.4, saturation=0.0, flip=False)


@dataclass
class MiniConfig:
    data: str = "mnist5k"
    root: Optional[str] = None
    model: str = "lenet5_bn"
    layer: str = "features"
    noises: tuple = (0.0, 0.5, 0.8)
    ks: tuple = (10, 50, 200)
    seeds: tuple = (0, 1, 2)
    kinds: tuple = ("conv", "adder")
    pre_epochs: int = 30
    cf_epochs: int = 12
    batch_size: int = 128
    lr: float = 0.1
    # The AdderNet row: one noise rate and one K (fixed in advance, not picked from the conv results).
    adder_noise: float = 0.8
    adder_k: int = 50
    adder_pre_epochs: int = 30
    adder_cf_epochs: int = 12
    limit_batches: Optional[int] = None
    device: str = "cpu"
    threads: int = 1
    augment: CFAugment = field(default_factory=lambda: dataclasses.replace(DIGIT_AUGMENT))

    @classmethod
    def quick(cls, **kw) -> "MiniConfig":
        """Seconds to a couple of minutes: one seed, few epochs, the end points of noise and K."""
        base = dict(noises=(0.0, 0.8), ks=(10, 50), seeds=(0,), pre_epochs=6, cf_epochs=3, adder_pre_epochs=2,
                    adder_cf_epochs=1, adder_k=10)
        base.update(kw)
        return cls(**base)

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["augment"] = dataclasses.asdict(self.augment)
        return d


def _stats(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


class _Recorder:
    def __init__(self):
        self.acc: dict[tuple, list[float]] = {}
        self.seconds: dict[tuple, list[float]] = {}

    def add(self, key: tuple, acc: float, seconds: float):
        self.acc.setdefault(key, []).append(round(100.0 * acc, 2))
        self.seconds.setdefault(key, []).append(round(seconds, 1))

    def cells(self) -> list[dict]:
        out = []
        for (network, kind, noise, k), accs in self.acc.items():
            mean, std = _stats(accs)
            out.append({"network": network, "kind": kind, "noise": noise, "K": k, "probe_acc": accs,
                        "mean": round(mean, 2), "std": round(std, 2)})
        return out

    def timing(self) -> list[dict]:
        return [{"network": n, "kind": kd, "noise": p, "K": k, "seconds": s}
                for (n, kd, p, k), s in self.seconds.items()]


def _model(cfg: MiniConfig, kind: str, num_classes: int, info):
    return build_backbone(cfg.model, num_classes=num_classes, kind=kind, in_channels=info.in_channels)


def run_seed(cfg: MiniConfig, seed: int, rec: _Recorder, pre_fit: list, bar=None, log=None):
    train_plain, test_plain, info = plain_loaders(cfg.data, cfg.root, batch_size=500)
    probe = dict(layer=cfg.layer, device=cfg.device, seed=seed)
    quiet = dict(progress=False, log=None, device=cfg.device, limit_batches=cfg.limit_batches)

    t_start = time.perf_counter()

    def tick(what):
        what = f"[{time.perf_counter() - t_start:6.0f} s] {what}"
        if bar is not None:
            bar.set_postfix_str(what)
            bar.update(1)
        if log:
            log(what)

    for kind in cfg.kinds:
        adder = kind == "adder"
        noises = (cfg.adder_noise,) if adder else cfg.noises
        ks = (cfg.adder_k,) if adder else cfg.ks
        pre_epochs = cfg.adder_pre_epochs if adder else cfg.pre_epochs
        cf_epochs = cfg.adder_cf_epochs if adder else cfg.cf_epochs

        t0 = time.perf_counter()
        seed_everything(seed)
        rnd = _model(cfg, kind, info.num_classes, info)
        acc = probe_accuracy(rnd, train_plain, test_plain, recalibrate=True, **probe)
        rec.add(("random", kind, None, None), acc, time.perf_counter() - t0)
        tick(f"seed {seed} {kind} random: {100 * acc:.1f}%")

        for p in noises:
            t0 = time.perf_counter()
            seed_everything(seed)
            pre = _model(cfg, kind, info.num_classes, info)
            res = train_pre(pre, cfg.data, root=cfg.root, noise=p, noise_seed=seed, epochs=pre_epochs,
                            batch_size=cfg.batch_size, lr=cfg.lr, seed=seed, **quiet)
            last = res.history[-1] if res.history else {}
            acc = probe_accuracy(pre, train_plain, test_plain, **probe)
            t_pre = time.perf_counter() - t0
            rec.add(("pre", kind, p, None), acc, t_pre)
            pre_fit.append({"kind": kind, "noise": p, "seed": seed, "epochs": pre_epochs,
                            "train_acc_noisy": _pct(last.get("train_acc")),
                            "test_acc_clean": _pct(last.get("test_acc"))})
            tick(f"seed {seed} {kind} pre p={p}: {100 * acc:.1f}% (fits noisy labels to "
                 f"{_pct(last.get('train_acc'))}%)")

            t0 = time.perf_counter()
            feats, _, _ = cluster_features(pre, train_plain, layer=cfg.layer, device=cfg.device)
            t_feats = time.perf_counter() - t0
            for k in ks:
                t0 = time.perf_counter()
                pseudo = make_pseudo_labels(feats, k, seed=OFFICIAL_SEED + seed,
                                            config={"layer": cfg.layer, "noise": p, "kind": kind})
                seed_everything(seed)
                cf = _model(cfg, kind, k, info)
                train_cf(cf, cfg.data, pseudo, root=cfg.root, epochs=cf_epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, aug=cfg.augment, seed=seed, **quiet)
                acc = probe_accuracy(cf, train_plain, test_plain, **probe)
                rec.add(("cf", kind, p, k), acc, t_feats + time.perf_counter() - t0)
                tick(f"seed {seed} {kind} cf p={p} K={k}: {100 * acc:.1f}%")


def _pct(x):
    return None if x is None else round(100.0 * float(x), 2)


def total_runs(cfg: MiniConfig) -> int:
    n = 0
    for kind in cfg.kinds:
        nn_, nk = (1, 1) if kind == "adder" else (len(cfg.noises), len(cfg.ks))
        n += 1 + nn_ * (1 + nk)
    return n * len(cfg.seeds)


def claim(cells: list[dict], kind: str = "conv", noise: float = 0.8) -> Optional[dict]:
    """The issue's test: at this noise, best N_cf's mean beats N_pre's by more than std_cf + std_pre."""
    pre = [c for c in cells if c["network"] == "pre" and c["kind"] == kind and c["noise"] == noise]
    cfs = [c for c in cells if c["network"] == "cf" and c["kind"] == kind and c["noise"] == noise]
    if not pre or not cfs:
        return None
    pre, best = pre[0], max(cfs, key=lambda c: c["mean"])
    margin = best["mean"] - pre["mean"]
    return {"kind": kind, "noise": noise, "best_K": best["K"], "cf_mean": best["mean"], "cf_std": best["std"],
            "pre_mean": pre["mean"], "pre_std": pre["std"], "margin": round(margin, 2),
            "sum_of_stds": round(best["std"] + pre["std"], 2), "holds": margin > best["std"] + pre["std"]}


def set_threads(n: int) -> None:
    """One thread count for torch, the BLAS/OpenMP pools behind scikit-learn, and faiss. On a
    machine shared with other jobs, spin-waiting OpenMP threads cost more than they save: here one
    thread did the same training steps and probes in a quarter of the CPU time that two took."""
    torch.set_num_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)
    try:
        import faiss
    except ImportError:
        return
    faiss.omp_set_num_threads(n)


def run(cfg: MiniConfig, progress: bool = True, log=None) -> dict:
    set_threads(cfg.threads)
    rec, pre_fit = _Recorder(), []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total_runs(cfg), desc="clusterfit", dynamic_ncols=True)
    start = time.perf_counter()
    try:
        for seed in cfg.seeds:
            run_seed(cfg, seed, rec, pre_fit, bar, log)
    finally:
        if bar is not None:
            bar.close()
    cells = rec.cells()
    claims = [c for c in (claim(cells, kind, p) for kind in cfg.kinds
                          for p in ((cfg.adder_noise,) if kind == "adder" else cfg.noises)) if c]
    return {"cells": cells, "claims": claims, "timing": rec.timing(), "pre_fit": pre_fit,
            "config": cfg.as_dict(), "threads": cfg.threads, "total_seconds": round(time.perf_counter() - start, 1)}


def merge(results: list[dict]) -> dict:
    """One result from runs over disjoint seeds (the same config otherwise), e.g. one process per
    seed: per-seed lists are concatenated in the given order and the statistics recomputed."""
    if not results:
        raise ValueError("nothing to merge")
    rec, seeds = _Recorder(), []
    for r in results:
        seeds += list(r["config"]["seeds"])
        secs = {(t["network"], t["kind"], t["noise"], t["K"]): t["seconds"] for t in r["timing"]}
        for c in r["cells"]:
            key = (c["network"], c["kind"], c["noise"], c["K"])
            rec.acc.setdefault(key, []).extend(c["probe_acc"])
            rec.seconds.setdefault(key, []).extend(secs.get(key, []))
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs to merge share seeds: {seeds}")
    cells = rec.cells()
    cfg = dict(results[0]["config"], seeds=seeds)
    kinds = cfg["kinds"]
    claims = [c for c in (claim(cells, kind, p) for kind in kinds
                          for p in ((cfg["adder_noise"],) if kind == "adder" else cfg["noises"])) if c]
    return {"cells": cells, "claims": claims, "timing": rec.timing(),
            "pre_fit": [row for r in results for row in r["pre_fit"]], "config": cfg,
            "threads": results[0].get("threads"), "total_seconds": [r["total_seconds"] for r in results]}


def table(result: dict) -> str:
    secs = {(t["network"], t["kind"], t["noise"], t["K"]): t["seconds"] for t in result.get("timing", [])}
    rows = []
    for c in result["cells"]:
        s = secs.get((c["network"], c["kind"], c["noise"], c["K"]), [])
        rows.append({"network": c["network"], "kind": c["kind"],
                     "noise": "-" if c["noise"] is None else c["noise"], "K": "-" if c["K"] is None else c["K"],
                     "probe acc % (per seed)": ", ".join(f"{a:.1f}" for a in c["probe_acc"]),
                     "mean ± std": describe(c["probe_acc"]),   # a spread only with 2+ seeds
                     "seconds (per seed)": ", ".join(f"{x:.0f}" for x in s)})
    return report.table_markdown(rows, list(rows[0]) if rows else [])


def plot(result: dict, path: str) -> None:
    """Probe accuracy against noise: N_pre and, per noise rate, the best K's N_cf (means, std bars);
    the random-init network as a dashed line; each kind its own colour."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = result["cells"]
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"conv": "tab:blue", "adder": "tab:red"}
    for kind in ("conv", "adder"):
        pre = sorted((c for c in cells if c["network"] == "pre" and c["kind"] == kind), key=lambda c: c["noise"])
        if not pre:
            continue
        col = colours[kind]
        ax.errorbar([c["noise"] for c in pre], [c["mean"] for c in pre], [c["std"] for c in pre], color=col,
                    marker="o", capsize=3, label=f"N_pre ({kind})")
        best = []
        for p in [c["noise"] for c in pre]:
            cfs = [c for c in cells if c["network"] == "cf" and c["kind"] == kind and c["noise"] == p]
            if cfs:
                best.append(max(cfs, key=lambda c: c["mean"]))
        if best:
            ax.errorbar([c["noise"] for c in best], [c["mean"] for c in best], [c["std"] for c in best], color=col,
                        marker="s", linestyle="--", capsize=3, label=f"best N_cf ({kind})")
            for c in best:
                ax.annotate(f"K={c['K']}", (c["noise"], c["mean"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=col)
        for c in cells:
            if c["network"] == "random" and c["kind"] == kind:
                ax.axhline(c["mean"], color=col, linestyle=":", linewidth=1, label=f"random init ({kind})")
    ax.set_xlabel("label noise p of N_pre's training labels")
    ax.set_ylabel("linear-probe accuracy on held-out images (%)")
    ax.set_title("ClusterFit on mnist5k (LeNet-5-BN), mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    report.save_figure(fig, path)
    plt.close(fig)
