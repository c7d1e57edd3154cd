"""``fit``: a whole training run with checkpoints, resume, metrics and plots; ``compare``: the adder
model and its CNN twin one after the other, with the side-by-side summary."""
from __future__ import annotations

import dataclasses
import os
import random
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data import make_loaders
from . import amp as _amp
from . import distributed as _dist
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig, resolve
from .costs import count_ops
from .loop import _batches, evaluate, train_one_epoch
from .metrics import write_metrics
from .optim import build_optimizer, cosine_schedule, set_schedule_length
from .plots import plot_compare, plot_curves
from .summary import write_summary
from .tiny import build_model

# Fields a checkpoint must agree on to be resumed; the rest (epochs, workers, progress...) may change.
_RESUME_MUST_MATCH = ("model", "kind", "data", "batch_size", "seed")


@dataclass
class FitResult:
    model: nn.Module            # the trained model, unwrapped from DDP
    history: list               # one metrics dict per epoch
    config: TrainConfig         # resolved
    out: str
    ops: dict                   # count_ops per image
    params: int

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def summary_row(self) -> dict:
        h = self.history
        return {
            "kind": self.config.kind, "model": self.config.model, "data": self.config.data, "epochs": len(h),
            "test_acc": h[-1]["test_acc"] if h else None,
            "best_test_acc": max(r["test_acc"] for r in h) if h else None,
            "seconds_per_epoch": sum(r["epoch_seconds"] for r in h) / len(h) if h else None,
            **self.ops, "params": self.params,
        }


def pick_device(device: Optional[str]) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The data order's seed for one epoch: a function of (seed, epoch, rank) alone, so a resumed
    run shuffles exactly as the uninterrupted one without saving generator state."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0] >> 1)


def set_loader_epoch(loader, seed: int, epoch: int, rank: int = 0) -> None:
    """Call at the start of every epoch: DistributedSampler.set_epoch, and re-seed the loader's
    generator (it draws the shuffle order and the workers' base seed)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    gens = [getattr(loader, "generator", None), getattr(sampler, "generator", None)]
    for g in {id(g): g for g in gens if g is not None}.values():
        g.manual_seed(epoch_seed(seed, epoch, rank))


def _exact_test_shard(loader, env, batch_size, num_workers) -> DataLoader:
    # make_loaders' DistributedSampler pads the last shard with repeats; disjoint strided shards
    # make the summed accuracy exact.
    ds = loader.dataset
    shard = Subset(ds, range(env.rank, len(ds), env.world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available())


def _resume_path(cfg: TrainConfig) -> Optional[str]:
    if cfg.resume in (False, None, ""):
        return None
    if cfg.resume is True:
        return os.path.join(cfg.out, "last.pt")
    path = os.fspath(cfg.resume)
    return os.path.join(path, "last.pt") if os.path.isdir(path) else path


def fit(config: TrainConfig, *, model: Optional[nn.Module] = None, loaders=None,
        loss_fn: Callable = F.cross_entropy, log: Optional[Callable[[str], None]] = print) -> FitResult:
    """Train one model (kind 'adder' or 'conv') as ``config`` says; see ``compare`` for 'both'.

    Writes into ``config.out`` (rank 0 only): ``last.pt`` after every epoch (atomically),
    ``metrics.json``/``metrics.csv``, ``curves.png`` and ``summary.json``/``summary.md`` at the end.
    ``model``/``loaders`` (``(train, test, info)`` as ``make_loaders`` returns) replace the ones the
    config names, for pipelines that bring their own; build the model after seeding if resume must
    be exact. With ``distributed`` the process group is joined (torchrun) and left open: call
    ``distributed.cleanup()`` when done.

    Resume is bit for bit with ``num_workers=0``: RNG states, optimiser, schedule and history come
    from the checkpoint, and the data order is re-seeded from (seed, epoch) every epoch. With worker
    processes the augmentation of a resumed run differs (workers keep their own RNG).
    """
    cfg = resolve(config)
    if cfg.kind == "both":
        raise ValueError("fit trains one kind; use compare() for kind='both'")
    log = log or (lambda _msg: None)
    if cfg.distributed:
        env, device = _dist.setup(cfg.device)
    else:
        env, device = _dist.DistEnv(), pick_device(cfg.device)
    say = log if env.is_main else (lambda _msg: None)
    seed_everything(cfg.seed)

    if loaders is None:
        loaders = make_loaders(cfg.data, cfg.data_root, cfg.batch_size, cfg.num_workers, seed=cfg.seed,
                               distributed=cfg.distributed)
    train_loader, test_loader, info = loaders
    if cfg.distributed:
        test_loader = _exact_test_shard(test_loader, env, cfg.batch_size, cfg.num_workers)
    if model is None:
        model = build_model(cfg.model, num_classes=info.num_classes, kind=cfg.kind,
                            in_channels=info.in_channels, eta=cfg.eta)
    model = model.to(device)
    ops = count_ops(model, (info.in_channels, *info.image_size))
    params = sum(p.numel() for p in model.parameters())
    if env.world_size > 1:
        # Same init everywhere (DDP broadcasts rank 0's anyway), but augmentation must differ by rank.
        torch.manual_seed(cfg.seed + 1_000_003 * env.rank)

    steps = _batches(train_loader, cfg.limit_batches)
    optimizer = build_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay)
    scheduler = cosine_schedule(optimizer, cfg.epochs, steps, per_step=cfg.schedule == "step")
    dtype = _amp.amp_dtype(cfg.amp, device.type)
    scaler = _amp.make_scaler(device, dtype)

    start_epoch, history = 0, []
    path = _resume_path(cfg)
    if path is not None:
        if os.path.exists(path):
            start_epoch, history = _restore(path, cfg, env, model, optimizer, scheduler, scaler, steps)
            say(f"resumed from {path} after epoch {start_epoch}")
        elif cfg.resume is True:
            say(f"no checkpoint at {path}: starting from scratch")
        else:
            raise FileNotFoundError(f"resume checkpoint {path} not found")

    net = model
    if env.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if env.is_main:
        os.makedirs(cfg.out, exist_ok=True)
    ckpt = os.path.join(cfg.out, "last.pt")
    tag = f"{cfg.kind} {cfg.model}"
    if start_epoch == 0:
        say(f"{tag} on {cfg.data}: {cfg.epochs} epochs of {steps} steps, batch {cfg.batch_size}"
            f"{f' x {env.world_size} processes' if env.world_size > 1 else ''}, lr {cfg.lr} cosine, "
            f"eta {cfg.eta}, seed {cfg.seed}, {device}{f', amp {dtype}' if dtype else ''} -> {cfg.out}")
    last = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, cfg.stop_after)
    for epoch in range(start_epoch, last):
        set_loader_epoch(train_loader, cfg.seed, epoch, env.rank)
        t0 = time.perf_counter()
        tr = train_one_epoch(net, train_loader, optimizer, scheduler, device, amp=dtype or False, loss_fn=loss_fn,
                             progress=cfg.progress and env.is_main, scaler=scaler,
                             limit_batches=cfg.limit_batches, desc=f"{tag} {epoch + 1}/{cfg.epochs}")
        if not getattr(scheduler, "per_step", True):
            scheduler.step()
        if not np.isfinite(tr["loss"]):
            raise FloatingPointError(f"{tag}: training loss is {tr['loss']} in epoch {epoch + 1}; "
                                     f"try a lower --lr")
        _dist.broadcast_buffers(model)
        te = evaluate(model, test_loader, device, amp=dtype or False, loss_fn=loss_fn,
                      limit_batches=cfg.limit_batches, reduce=cfg.distributed)
        row = {"epoch": epoch + 1, "lr": tr["lr"], "train_loss": tr["loss"], "train_acc": tr["acc"],
               "test_loss": te["loss"], "test_acc": te["acc"], "epoch_seconds": time.perf_counter() - t0}
        history.append(row)
        rngs = _dist.gather_objects(rng_state())
        if env.is_main:
            save_checkpoint(_state(cfg, epoch + 1, history, model, optimizer, scheduler, scaler, rngs), ckpt)
            write_metrics(cfg.out, history)
        say(f"{tag} epoch {epoch + 1}/{cfg.epochs}  lr {row['lr']:.4g}  train loss {row['train_loss']:.4f} "
            f"acc {100 * row['train_acc']:.2f}%  test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.2f}%  "
            f"{row['epoch_seconds']:.1f}s")
        _dist.barrier()

    result = FitResult(model, history, cfg, cfg.out, ops, params)
    if env.is_main and history:
        write_metrics(cfg.out, history)
        plot_curves(history, os.path.join(cfg.out, "curves.png"), title=f"{tag} on {cfg.data}")
        write_summary(cfg.out, [result.summary_row()], _header(cfg, device))
    return result


def _state(cfg, epoch, history, model, optimizer, scheduler, scaler, rngs) -> dict:
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "epoch": epoch, "history": history, "config": cfg.to_dict(), "rng": rngs,
    }


def _restore(path, cfg, env, model, optimizer, scheduler, scaler, steps) -> tuple[int, list]:
    ck = load_checkpoint(path, map_location="cpu")
    saved = ck["config"]
    diff = [k for k in _RESUME_MUST_MATCH if saved.get(k) != getattr(cfg, k)]
    if diff:
        raise ValueError(f"{path} was trained with a different " + ", ".join(
            f"{k} ({saved.get(k)!r}, now {getattr(cfg, k)!r})" for k in diff))
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    if saved.get("epochs") != cfg.epochs or saved.get("limit_batches") != cfg.limit_batches:
        warnings.warn(f"resuming with epochs={cfg.epochs} (checkpoint planned {saved.get('epochs')}): the "
                      "cosine schedule is stretched from here, so this is not the run an uninterrupted "
                      "job would have made", stacklevel=3)
        set_schedule_length(scheduler, cfg.epochs, steps)
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    rngs = ck["rng"]
    if len(rngs) != env.world_size:
        warnings.warn(f"checkpoint has RNG states for {len(rngs)} ranks, this run has {env.world_size}: "
                      "the random stream will differ from an uninterrupted run", stacklevel=3)
    set_rng_state(rngs[env.rank] if env.rank < len(rngs) else rngs[0])
    return int(ck["epoch"]), list(ck["history"])


def _header(cfg: TrainConfig, device) -> dict:
    return {"model": cfg.model, "data": cfg.data, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "eta": cfg.eta, "seed": cfg.seed, "device": str(device)}


def compare(config: TrainConfig, log: Optional[Callable[[str], None]] = print, **fit_kwargs) -> dict:
    """Train kind 'adder' then 'conv' (same seed, so the same data order) under ``out/adder`` and
    ``out/conv``; write ``summary.json``, ``summary.md`` and ``compare.png`` in ``out``.
    Returns {'adder': FitResult, 'conv': FitResult, 'rows': [...], 'table': str}."""
    cfg = resolve(config)
    if isinstance(cfg.resume, str) and os.path.isfile(cfg.resume):
        raise ValueError("with kind 'both', resume takes True or the --out folder, not one checkpoint file")
    results = {}
    for kind in ("adder", "conv"):
        resume = os.path.join(cfg.resume, kind) if isinstance(cfg.resume, str) and cfg.resume else cfg.resume
        if isinstance(resume, str) and not os.path.isdir(resume):
            resume = False
        sub = dataclasses.replace(cfg, kind=kind, out=os.path.join(cfg.out, kind), resume=resume)
        results[kind] = fit(sub, log=log, **fit_kwargs)
    rows = [r.summary_row() for r in results.values()]
    table = None
    if _dist.is_main():
        device = next(results["adder"].model.parameters()).device
        table = write_summary(cfg.out, rows, _header(cfg, device))
        plot_compare({k: r.history for k, r in results.items() if r.history}, os.path.join(cfg.out, "compare.png"),
                     title=f"{cfg.model} on {cfg.data}: adder vs conv")
    return {**results, "rows": rows, "table": table}
