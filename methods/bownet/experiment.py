"""The miniature: RotNet, then BoWNet, then BoWNet x2 (plus a random-init baseline), over seeds and
kinds (conv / adder), each scored by linear probes and few-shot episodes on frozen features.
Writes the JSON (``{"rows": [...]}`` plus a ``meta`` block), a markdown table and a PNG of a few
images with their bags of words."""
from __future__ import annotations

import dataclasses
import os
import platform
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader, Subset

from addernet.data import dataset_info, make_loaders
from addernet.train import distributed, seed_everything

from ..common import report
from ..common.backbone import build_backbone
from ..common.stats import QUICK_NOTE, describe
from .evaluation import evaluate_representation
from .perturb import Perturbation
from .pipeline import random_init, train_bownet, train_rotnet
from .rotnet import rotation_accuracy_by_class
from .vocabulary import BoWTeacher

STAGES = ("random", "rotnet", "bownet", "bownet2")
METRICS = ("probe_all", "probe_10", "fewshot_1", "fewshot_5")
# The teacher layer per model: a mid-level convolutional stage (a spatial map), and the border to
# drop from it. LeNet's pool2 (16 x 5 x 5) follows an unpadded conv2, so no position of it sees
# padding and all 25 are kept; the padded ResNet/VGG stages drop 1 position, as OBoW does.
DEFAULT_LAYER = {"lenet5_bn": ("pool2", 0), "resnet20": ("layer2", 1), "resnet32": ("layer2", 1),
                 "vgg_small": ("features.13", 1), "resnet18": ("layer3", 1), "resnet50": ("layer3", 1),
                 "tinynet": ("features.6", 1)}


@dataclass
class MiniConfig:
    data: str = "mnist5k"
    data_root: Optional[str] = None
    model: str = "lenet5_bn"
    layer: Optional[str] = None
    kinds: tuple = ("conv", "adder")
    seeds: tuple = (0, 1, 2)
    stages: tuple = STAGES
    rotnet_epochs: int = 4      # x 4 rotations: 64k images seen, about a BoWNet stage's 80k
    bownet_epochs: int = 20
    rot_mode: str = "all"
    num_words: int = 128
    max_vectors: int = 50_000
    kmeans_iters: int = 30
    batch_size: int = 128
    lr: float = 0.05
    weight_decay: float = 5e-4
    kappa: float = 5.0
    assign: str = "hard"
    pool: str = "max"
    binary: bool = False
    inv_delta: float = 15.0
    border: Optional[int] = None     # None: the model's default (DEFAULT_LAYER)
    crop_scale: Optional[tuple] = None   # None: Perturbation.for_data's (0.8-1 on digits)
    train_subset: Optional[int] = None
    episodes: int = 600
    per_class: int = 10
    device: Optional[str] = None
    threads: Optional[int] = 1
    progress: bool = True
    out: str = "runs/bownet"
    json: Optional[str] = None
    quick: bool = False
    distributed: bool = False

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def quick_config(**overrides) -> MiniConfig:
    """--quick: the same stages, short: 1 seed, 1000 pretext images, 2 epochs a stage, 32 words."""
    kw = dict(seeds=(0,), rotnet_epochs=2, bownet_epochs=2, num_words=32, max_vectors=10_000, kmeans_iters=15,
              train_subset=1000, episodes=100, quick=True)
    kw.update(overrides)
    return MiniConfig(**kw)


def validate_config(cfg: MiniConfig) -> MiniConfig:
    """User mistakes, found before anything trains (ValueError / FileNotFoundError, one line)."""
    info = dataset_info(cfg.data, cfg.data_root)
    for k in cfg.kinds:
        if k not in ("conv", "adder"):
            raise ValueError(f"kind must be 'conv', 'adder' or 'both', got {k!r}")
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {', '.join(bad)}; choose from {', '.join(STAGES)}")
    if not cfg.seeds:
        raise ValueError("give at least one seed")
    default_layer, default_border = DEFAULT_LAYER.get(cfg.model, (None, 1))
    layer = cfg.layer or default_layer
    border = default_border if cfg.border is None else cfg.border
    if layer is None:
        raise ValueError(f"no default teacher layer for model {cfg.model!r}: pass --layer")
    net = build_backbone(cfg.model, num_classes=info.num_classes or 10, kind="conv", in_channels=info.in_channels)
    names = tuple(getattr(net, "feature_layers", ()))
    if layer == "features" or layer not in dict(net.named_modules()):
        raise ValueError(f"layer {layer!r} is not a convolutional module of {cfg.model}; its feature layers "
                         f"are {', '.join(names)}")
    if border < 0:
        raise ValueError(f"border must be >= 0, got {border}")
    for name in ("rotnet_epochs", "bownet_epochs", "num_words", "batch_size", "episodes", "per_class"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.data_root is None and cfg.data not in ("mnist5k", "digits"):
        raise ValueError(f"dataset {cfg.data!r} is read from local files: pass --data-root")
    return dataclasses.replace(cfg, layer=layer, border=border)


def _loaders(cfg: MiniConfig, seed: int):
    """(train, test) for training (shuffled, sharded under DDP; a seeded subset with --train-subset)
    and (train, test) for evaluation (in order, all of it, the same on every rank)."""
    eval_train, eval_test, info = make_loaders(cfg.data, cfg.data_root, 256, seed=seed, augment=False,
                                               normalize=False)
    eval_train = DataLoader(eval_train.dataset, batch_size=256, shuffle=False)
    train_set = eval_train.dataset
    if cfg.train_subset is not None and cfg.train_subset < len(train_set):
        idx = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[:cfg.train_subset]
        train_set = Subset(train_set, idx.tolist())
    train, test, _ = make_loaders((train_set, eval_test.dataset), None, cfg.batch_size, seed=seed,
                                  distributed=cfg.distributed, info=info)
    return (train, test), (eval_train, eval_test), info


def run_seed(cfg: MiniConfig, kind: str, seed: int, log: Callable[[str], None] = print) -> dict:
    """All stages for one (kind, seed): {stage: metrics dict (fractions) + 'seconds'}; also returns
    the teachers and vocabularies under '_nets' for the figure."""
    seed_everything(seed)
    (train, test), (ev_train, ev_test), info = _loaders(cfg, seed)
    shape = (info.in_channels, *info.image_size)
    device = _device(cfg)
    perturb = Perturbation.for_data(info.in_channels, cfg.data,
                                    **({} if cfg.crop_scale is None else {"crop_scale": tuple(cfg.crop_scale)}))

    def make():
        return build_backbone(cfg.model, num_classes=info.num_classes, kind=kind, in_channels=info.in_channels)

    def score(model):
        return evaluate_representation(model, ev_train, ev_test, seed=seed, per_class=cfg.per_class,
                                       episodes=cfg.episodes, device=device, progress=False)

    common = dict(seed=seed, device=device, progress=cfg.progress and _is_main(), log=None,
                  distributed=cfg.distributed)
    bow_kw = dict(layer=cfg.layer, num_words=cfg.num_words, epochs=cfg.bownet_epochs, input_shape=shape,
                  perturb=perturb, lr=cfg.lr, weight_decay=cfg.weight_decay, kappa=cfg.kappa, border=cfg.border,
                  max_vectors=cfg.max_vectors, kmeans_iters=cfg.kmeans_iters, assign=cfg.assign, pool=cfg.pool,
                  binary=cfg.binary, inv_delta=cfg.inv_delta, vocab_loader=ev_train, **common)
    out, nets = {}, {}

    def timed(stage, fn, extra=None):
        t0 = time.perf_counter()
        model = fn()
        t1 = time.perf_counter()
        if not _is_main():        # under DDP rank 0 scores; the other ranks go on to the next stage
            return model
        # extra (the rotation analysis) first: scoring re-estimates BN statistics on upright images
        # only, which a network trained on all four rotations does not expect.
        row = extra(model) if extra is not None else {}
        row.update(score(model))
        row.update(train_seconds=t1 - t0, eval_seconds=time.perf_counter() - t1)
        out[stage] = row
        log(f"{kind} seed {seed} {stage:8s} " + "  ".join(f"{k} {100 * row[k]:.1f}" for k in _metric_keys(cfg))
            + f"  ({row['train_seconds']:.0f}s train, {row['eval_seconds']:.0f}s eval)")
        return model

    want = set(cfg.stages)
    if "random" in want:
        timed("random", lambda: random_init(make(), ev_train, device=device))
    if want & {"rotnet", "bownet", "bownet2"}:
        rot = timed("rotnet", lambda: train_rotnet(make(), (train, test), epochs=cfg.rotnet_epochs, lr=cfg.lr,
                                                   weight_decay=cfg.weight_decay, mode=cfg.rot_mode, **common),
                    extra=lambda m: {"rotation": rotation_accuracy_by_class(m, ev_test, info.num_classes, device)})
        if want & {"bownet", "bownet2"}:
            holder = {}

            def stage1():
                holder["s"], holder["v"] = train_bownet(rot, make(), (train, test), **bow_kw)
                return holder["s"]
            bow = timed("bownet", stage1)
            nets["bownet"] = (rot, holder["v"])
            if "bownet2" in want:
                def stage2():
                    holder["s2"], holder["v2"] = train_bownet(bow.backbone, make(), (train, test), **bow_kw)
                    return holder["s2"]
                timed("bownet2", stage2)
                nets["bownet2"] = (bow.backbone, holder["v2"])
    out["_nets"] = nets
    return out


def _device(cfg: MiniConfig) -> torch.device:
    if cfg.distributed:          # this rank's device: cuda:LOCAL_RANK, or the CPU
        return distributed.setup(cfg.device)[1]
    return torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def _is_main() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def _metric_keys(cfg: MiniConfig):
    return ("probe_all", f"probe_{cfg.per_class}", "fewshot_1", "fewshot_5")


def _mean_std(values):
    m = report.mean_std(values)
    return m["mean"], m["std"] or 0.0


def run(cfg: MiniConfig, log: Callable[[str], None] = print) -> dict:
    cfg = validate_config(cfg)
    if cfg.threads:
        # BLAS (the scikit-learn probe) too: on this 2-core machine shared with other jobs, 2 threads
        # made the probe 7x slower in CPU time than 1.
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(cfg.threads)
        from ..common import faiss_available
        if faiss_available():   # faiss's OpenMP threads spin when the cores are oversubscribed
            import faiss
            faiss.omp_set_num_threads(cfg.threads)
        with threadpool_limits(cfg.threads):
            return _run(cfg, log)
    return _run(cfg, log)


def _run(cfg: MiniConfig, log: Callable[[str], None]) -> dict:
    if cfg.distributed:
        distributed.setup(cfg.device)    # join torchrun's group before the loaders shard the data
    if not _is_main():
        for kind in cfg.kinds:
            for seed in cfg.seeds:
                run_seed(cfg, kind, seed, log=lambda _m: None)
        return {}
    os.makedirs(cfg.out, exist_ok=True)
    start = time.perf_counter()
    keys = _metric_keys(cfg)
    results = {}   # (stage, kind) -> list of per-seed metric dicts
    figure_nets = None
    for kind in cfg.kinds:
        for seed in cfg.seeds:
            res = run_seed(cfg, kind, seed, log)
            nets = res.pop("_nets")
            if figure_nets is None and nets:
                figure_nets = nets
            for stage, row in res.items():
                results.setdefault((stage, kind), []).append(row)
    rows, details = [], []
    for (stage, kind), per_seed in results.items():
        row = {"stage": stage, "kind": kind}
        for key, name in zip(keys, METRICS):
            row[name] = [round(100 * r[key], 4) for r in per_seed]
        rows.append(row)
        details.append({"stage": stage, "kind": kind,
                        "fewshot_1_ci95": [round(100 * r["fewshot_1_ci95"], 4) for r in per_seed],
                        "fewshot_5_ci95": [round(100 * r["fewshot_5_ci95"], 4) for r in per_seed],
                        "train_seconds": [round(r["train_seconds"], 2) for r in per_seed],
                        "eval_seconds": [round(r["eval_seconds"], 2) for r in per_seed]})
        if stage == "rotnet":   # per test-digit rotation accuracy and 0/180 confusion, per seed
            details[-1]["rotation_acc_by_class"] = [[round(100 * a, 2) for a in r["rotation"]["acc"]]
                                                    for r in per_seed]
            details[-1]["upside_down_by_class"] = [[round(100 * a, 2) for a in r["rotation"]["upside_down"]]
                                                   for r in per_seed]
    table = results_table(rows, details)
    verdicts = [verdict(rows, kind) for kind in cfg.kinds]
    meta = {"config": cfg.to_dict(), "details": details, "verdicts": [v for v in verdicts if v],
            "seeds": list(cfg.seeds), "wall_seconds": round(time.perf_counter() - start, 1),
            "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                        "torch": torch.__version__, "device": cfg.device or "auto"}}
    payload = {"rows": rows, "meta": meta, "note": QUICK_NOTE if cfg.quick else None}
    json_path = cfg.json or os.path.join(cfg.out, "bownet.json")
    report.write_json(json_path, payload)
    with open(os.path.join(cfg.out, "table.md"), "w") as f:
        f.write(table + "\n")
    if figure_nets:
        histogram_figure(figure_nets, cfg, os.path.join(cfg.out, "bow_histograms.png"))
    log(table)
    for v in verdicts:
        if v:
            log(v)
    return payload


def results_table(rows: list, details: list) -> str:
    head = "| stage | kind | probe all | probe 10/class | 1-shot | 5-shot | train s |\n|---|---|---|---|---|---|---|"
    lines = [head]
    for row, det in zip(rows, details):
        cells = []
        for name in METRICS:
            cells.append(describe(row[name]))    # percent already; a spread only with 2+ seeds
        ts = _mean_std(det["train_seconds"])[0]
        lines.append(f"| {row['stage']} | {row['kind']} | " + " | ".join(cells) + f" | {ts:.0f} |")
    return "\n".join(lines)


def verdict(rows: list, kind: str) -> Optional[str]:
    """The issue's claim for one kind: BoWNet beats RotNet on the 10-per-class probe and on 5-shot
    by more than the sum of the two standard deviations."""
    by = {r["stage"]: r for r in rows if r["kind"] == kind}
    if "bownet" not in by or "rotnet" not in by:
        return None
    parts, ok = [], True
    for name in ("probe_10", "fewshot_5"):
        (mb, sb), (mr, sr) = _mean_std(by["bownet"][name]), _mean_std(by["rotnet"][name])
        gap, margin = mb - mr, sb + sr
        ok &= gap > margin
        parts.append(f"{name}: bownet {mb:.1f}±{sb:.1f} vs rotnet {mr:.1f}±{sr:.1f}, gap {gap:+.1f} "
                     f"({'>' if gap > margin else '<='} {margin:.1f})")
    seeds = len(by["bownet"]["probe_10"])
    note = "" if seeds > 1 else " (one seed: no spread, so this says little)"
    return f"[{kind}] claim {'HOLDS' if ok else 'FAILS'}{note}: " + "; ".join(parts)


@torch.no_grad()
def histogram_figure(nets: dict, cfg: MiniConfig, path: str, n_images: int = 6):
    """A few test images, each with its bag of words under the vocabulary of each BoWNet round."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from addernet.data import get_dataset

    ds = get_dataset(cfg.data, cfg.data_root, train=False, augment=False, normalize=False)
    idx = torch.linspace(0, len(ds) - 1, n_images).long().tolist()
    x = torch.stack([ds[i][0] for i in idx])
    labels = [int(ds[i][1]) for i in idx]
    rounds = [(name, BoWTeacher(teacher.cpu(), vocab.cpu())) for name, (teacher, vocab) in nets.items()]
    bags = {name: t(x) for name, t in rounds}
    fig, axes = plt.subplots(n_images, 1 + len(rounds), figsize=(3 + 4 * len(rounds), 1.6 * n_images),
                             gridspec_kw={"width_ratios": [1] + [3] * len(rounds)}, squeeze=False)
    for r in range(n_images):
        img = x[r].permute(1, 2, 0).squeeze(-1).numpy()
        axes[r, 0].imshow(img, cmap="gray" if img.ndim == 2 else None)
        axes[r, 0].set_axis_off()
        axes[r, 0].set_title(f"label {labels[r]}", fontsize=8)
        for c, (name, _) in enumerate(rounds, start=1):
            h = bags[name][r].numpy()
            axes[r, c].bar(range(len(h)), h, width=1.0, color="tab:blue" if c == 1 else "tab:orange")
            axes[r, c].set_xlim(-0.5, len(h) - 0.5)
            axes[r, c].tick_params(labelsize=6)
            if r == 0:
                teacher = "RotNet" if name == "bownet" else "BoWNet"
                axes[r, c].set_title(f"{name} target: {teacher} teacher, {len(h)} words", fontsize=8)
    fig.suptitle(f"Bags of visual words ({cfg.kinds[0]} {cfg.model}, layer {cfg.layer}, {cfg.assign}/{cfg.pool})",
                 fontsize=9)
    fig.tight_layout()
    report.save_figure(fig, path)
    plt.close(fig)
