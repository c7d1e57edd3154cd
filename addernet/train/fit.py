"""``fit``: a whole training run around a step, with checkpoints, exact resume, metrics and plots.

``fit(model, (train, test), step=..., epochs=..., out=...)`` needs no TrainConfig; ``fit(TrainConfig)``
(the CLI's path, ``configured.py``) builds the model and loaders the config names and calls the same
loop.
"""
from __future__ import annotations

import os
import random
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import amp as _amp
from . import distributed as _dist
from .callbacks import Callback, TrainState
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .costs import weight_layer_ops
from .loop import Step, _batches, evaluate, train_one_epoch
from .metrics import write_metrics
from .optim import build_optimizer, check_schedule, make_schedule, set_schedule_length
from .plots import plot_curves
from .step import classification_step
from .summary import write_summary

Log = Optional[Callable[[str], None]]


@dataclass
class FitResult:
    model: nn.Module            # the trained model, unwrapped from DDP
    history: list               # one metrics dict per epoch
    config: Any                 # the resolved TrainConfig, or None for fit(model, loaders)
    out: Optional[str]          # the run folder, None when nothing was written
    ops: dict                   # weight_layer_ops per image ({} without a DatasetInfo)
    params: int
    files: list = field(default_factory=list)   # the paths this call wrote, in order

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}

    def summary_row(self) -> dict:
        h, cfg = self.history, self.config
        accs = [r["test_acc"] for r in h if "test_acc" in r]
        return {
            "kind": cfg.kind if cfg is not None else _kind_of(self.model),
            "model": cfg.model if cfg is not None else type(self.model).__name__,
            "data": cfg.data if cfg is not None else None, "epochs": len(h),
            "test_acc": h[-1].get("test_acc") if h else None,
            "best_test_acc": max(accs) if accs else None,
            "seconds_per_epoch": sum(r["epoch_seconds"] for r in h) / len(h) if h else None,
            **self.ops, "params": self.params,
        }


def _kind_of(model: nn.Module) -> str:
    from ..nn import AdderConv2d

    return "adder" if any(isinstance(m, AdderConv2d) for m in model.modules()) else "conv"


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


# The keywords fit(TrainConfig) takes from the config; giving them too would be two answers.
_CONFIG_OWNS = {"epochs": None, "out": None, "device": None, "amp": False, "seed": 0, "resume": False,
                "progress": True, "limit_batches": None, "distributed": False, "lr": 0.1, "momentum": 0.9,
                "weight_decay": 5e-4, "stop_after": None, "schedule": "step"}


def fit(model_or_config=None, loaders=None, *, model: Optional[nn.Module] = None, step: Step = classification_step,
        eval_step: Optional[Step] = None, optimizer: Optional[torch.optim.Optimizer] = None, scheduler=None,
        epochs: Optional[int] = None, out: Optional[str] = None, callbacks: Sequence[Callback] = (),
        extra_state: Optional[dict] = None, device=None, amp=False, seed: int = 0, resume=False,
        progress: bool = True, log: Log = print, limit_batches: Optional[int] = None, distributed: bool = False,
        lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4, stop_after: Optional[int] = None,
        schedule: str = "step") -> FitResult:
    """Train ``model`` for ``epochs`` on ``loaders`` = (train, test) or (train, test, info); test may be None.

    Each batch goes through ``step(model, batch) -> StepOutput`` (default: cross-entropy with top-1
    accuracy; see ``train_one_epoch``); the test loader through ``eval_step`` (default
    ``classification_step``: a training step that updates by itself cannot evaluate).
    ``optimizer``/``scheduler``: None builds the paper's recipe, SGD(lr, momentum, weight_decay)
    with a cosine over the run, stepped per step (``schedule='epoch'``: per epoch; ``'constant'``: no decay); a caller's
    optimizer with no scheduler keeps its lr. ``callbacks``: ``Callback`` objects. ``extra_state``:
    {name: object with state_dict()/load_state_dict()} (a discriminator, its optimiser, a k-means
    result holder), saved in every checkpoint and restored on resume; modules in it are moved to
    the device. ``info`` (a DatasetInfo) adds operation counts to the summary.

    ``out``: the run folder (rank 0 writes): ``last.pt`` after every epoch, atomically;
    ``metrics.json``/``.csv`` (one row per epoch: lr, ``train_<metric>``, ``test_<metric>``,
    epoch_seconds); ``curves.png``, ``summary.json``/``.md`` at the end. None writes nothing.
    ``resume``: True (``out/last.pt``, fresh start if absent) or a checkpoint path. Resume is bit for
    bit with ``num_workers=0`` loaders: model, optimiser, schedule, scaler, extra state, history and
    every RNG state come from the checkpoint, and the data order is re-seeded from (seed, epoch).
    ``seed`` seeds everything at the start. ``distributed``: join the torchrun process group, wrap
    the model in DDP, average metrics over ranks; the train loader must shard (``make_loaders(...,
    distributed=True)``), the group is left open (``distributed.cleanup()``). ``stop_after`` ends
    after that many epochs with the schedule still planned for ``epochs`` (to test resuming).

    ``fit(TrainConfig(...), model=..., loaders=...)`` is the CLI's run: the config names the data,
    model, recipe and folder (see ``TrainConfig``).
    """
    from .config import TrainConfig

    if isinstance(model_or_config, TrainConfig):
        given = dict(epochs=epochs, out=out, device=device, amp=amp, seed=seed, resume=resume, progress=progress,
                     limit_batches=limit_batches, distributed=distributed, lr=lr, momentum=momentum,
                     weight_decay=weight_decay, stop_after=stop_after, schedule=schedule)
        clash = [k for k, v in given.items() if v != _CONFIG_OWNS[k]]
        if clash:
            raise TypeError(f"fit(TrainConfig) takes {', '.join(clash)} from the config, not as keywords")
        from .configured import fit_config

        return fit_config(model_or_config, model=model, loaders=loaders, step=step, eval_step=eval_step,
                          optimizer=optimizer, scheduler=scheduler, callbacks=callbacks, extra_state=extra_state,
                          log=log)
    if model_or_config is not None and model is not None:
        raise TypeError("fit got two models: pass it once")
    model = model_or_config if model_or_config is not None else model
    if not isinstance(model, nn.Module):
        raise TypeError(f"fit needs an nn.Module or a TrainConfig, got {type(model).__name__}")
    if loaders is None:
        raise TypeError("fit(model, loaders, ...) needs loaders: (train, test) or (train, test, info)")
    if epochs is None:
        raise TypeError("fit(model, loaders, ...) needs epochs=")
    if distributed:
        env, dev = _dist.setup(device)
    else:
        env, dev = _dist.DistEnv(), pick_device(device)
    seed_everything(seed)
    train_loader, test_loader, info = _split_loaders(loaders)
    run_config = {"epochs": int(epochs), "limit_batches": limit_batches, "seed": int(seed), "lr": float(lr),
                  "momentum": float(momentum), "weight_decay": float(weight_decay), "schedule": schedule,
                  "amp": str(amp), "model": type(model).__name__}
    return train_run(model, train_loader, test_loader, info, env=env, device=dev, step=step, eval_step=eval_step,
                     optimizer=optimizer, scheduler=scheduler, epochs=int(epochs), out=out, callbacks=callbacks,
                     extra_state=extra_state, amp=amp, seed=seed, resume=resume, progress=progress, log=log,
                     limit_batches=limit_batches, stop_after=stop_after, lr=lr, momentum=momentum,
                     weight_decay=weight_decay, schedule=schedule, distributed=distributed,
                     run_config=run_config, must_match=("seed", "model"), tag=type(model).__name__)


def _split_loaders(loaders):
    loaders = tuple(loaders)
    if len(loaders) == 2:
        return (*loaders, None)
    if len(loaders) == 3:
        return loaders
    raise ValueError(f"loaders must be (train, test) or (train, test, info), got {len(loaders)} items")


def _check_extra(extra_state: Optional[dict]) -> dict:
    extra = dict(extra_state or {})
    for name, obj in extra.items():
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise TypeError(f"extra_state[{name!r}] ({type(obj).__name__}) needs state_dict() and load_state_dict()")
    return extra


def _resume_path(resume, out: Optional[str]) -> Optional[str]:
    if resume in (False, None, ""):
        return None
    if resume is True:
        if out is None:
            raise ValueError("resume=True reads out/last.pt: give out, or resume=<checkpoint path>")
        return os.path.join(out, "last.pt")
    path = os.fspath(resume)
    return os.path.join(path, "last.pt") if os.path.isdir(path) else path


def train_run(model: nn.Module, train_loader, test_loader, info, *, env, device, step, eval_step, optimizer,
              scheduler, epochs, out, callbacks, extra_state, amp, seed, resume, progress, log, limit_batches,
              stop_after, lr, momentum, weight_decay, schedule, distributed, run_config, must_match, tag,
              title=None, header=None, config=None, intro=None) -> FitResult:
    """The epoch loop both forms of ``fit`` share (the caller has joined DDP and seeded)."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    check_schedule(schedule)
    say = (log or (lambda _msg: None)) if env.is_main else (lambda _msg: None)
    extra = _check_extra(extra_state)
    callbacks = tuple(callbacks)
    model = model.to(device)
    for obj in extra.values():
        if isinstance(obj, nn.Module):
            obj.to(device)
    ops = weight_layer_ops(model, (info.in_channels, *info.image_size)) if info is not None else {}
    params = sum(p.numel() for p in model.parameters())
    if env.world_size > 1:
        # Same init everywhere (DDP broadcasts rank 0's anyway), but augmentation must differ by rank.
        torch.manual_seed(seed + 1_000_003 * env.rank)

    steps = _batches(train_loader, limit_batches)
    if optimizer is None:
        optimizer = build_optimizer(model, lr, momentum, weight_decay)
        if scheduler is None:
            if steps is None:
                raise ValueError("the default schedule needs len(train loader); "
                                 "pass scheduler= or limit_batches=")
            scheduler = make_schedule(optimizer, schedule, epochs, steps)
    dtype = _amp.amp_dtype(amp, device.type)
    scaler = _amp.make_scaler(device, dtype)

    start_epoch, history, global_step = 0, [], 0
    path = _resume_path(resume, out)
    if path is not None:
        if os.path.exists(path):
            start_epoch, history, global_step = _restore(path, run_config, must_match, env, model, optimizer,
                                                         scheduler, scaler, extra, epochs, limit_batches, steps)
            say(f"resumed from {path} after epoch {start_epoch}")
        elif resume is True:
            say(f"no checkpoint at {path}: starting from scratch")
        else:
            raise FileNotFoundError(f"resume checkpoint {path} not found")

    net = model
    if env.world_size > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if env.is_main and out is not None:
        os.makedirs(out, exist_ok=True)
    if start_epoch == 0:
        ranks = f" x {env.world_size} processes" if env.world_size > 1 else ""
        say(intro or f"{tag}: {epochs} epochs of {steps} steps{ranks}, seed {seed}, {device}"
                     f"{f', amp {dtype}' if dtype else ''}{f' -> {out}' if out else ''}")
    written = []
    state = TrainState(start_epoch, global_step, model, optimizer, extra=extra, scheduler=scheduler, history=history)
    last = epochs if stop_after is None else min(epochs, stop_after)
    for epoch in range(start_epoch, last):
        state.epoch = epoch
        set_loader_epoch(train_loader, seed, epoch, env.rank)
        for cb in callbacks:
            cb.on_epoch_start(state)
        t0 = time.perf_counter()
        tr = train_one_epoch(net, train_loader, optimizer, scheduler, device, step=step, amp=dtype or False,
                             scaler=scaler, callbacks=callbacks, progress=progress and env.is_main,
                             limit_batches=limit_batches, desc=f"{tag} {epoch + 1}/{epochs}", reduce=distributed,
                             state=state)
        if scheduler is not None and not getattr(scheduler, "per_step", True):
            scheduler.step()
        if "loss" in tr and not np.isfinite(tr["loss"]):
            raise FloatingPointError(f"{tag}: training loss is {tr['loss']} in epoch {epoch + 1}; try a lower lr")
        row = {"epoch": epoch + 1, "lr": tr["lr"]}
        row.update({f"train_{k}": v for k, v in tr.items() if k not in ("lr", "samples", "seconds")})
        if test_loader is not None:
            _dist.broadcast_buffers(model)
            te = evaluate(model, test_loader, device, step=eval_step or classification_step, amp=dtype or False,
                          limit_batches=limit_batches, reduce=distributed)
            row.update({f"test_{k}": v for k, v in te.items() if k != "samples"})
        row["epoch_seconds"] = time.perf_counter() - t0
        for cb in callbacks:
            cb.on_epoch_end(state, row)
        history.append(row)
        rngs = _dist.gather_objects(rng_state())
        if env.is_main and out is not None:
            save_checkpoint(_state(run_config, epoch + 1, state.global_step, history, model, optimizer, scheduler,
                                   scaler, extra, rngs), os.path.join(out, "last.pt"))
            write_metrics(out, history)
            written.append("last.pt")
        say(f"{tag} epoch {epoch + 1}/{epochs}  {describe(row)}")
        _dist.barrier()

    result = FitResult(model, history, config, out, ops, params)
    if env.is_main and history and out is not None:
        write_metrics(out, history)
        plot_curves(history, os.path.join(out, "curves.png"), title=title or tag)
        write_summary(out, [result.summary_row()], header or {"model": tag, "epochs": epochs, "seed": seed,
                                                               "device": str(device)})
        written += ["metrics.json", "metrics.csv", "curves.png", "summary.json", "summary.md"]
        result.files = [os.path.join(out, name) for name in dict.fromkeys(written)]
    return result


def describe(row: dict) -> str:
    """One log line's worth of an epoch row: accuracies in percent, the rest to 4 digits."""
    parts = [f"lr {row['lr']:.4g}"]
    for k, v in row.items():
        if k in ("epoch", "lr", "epoch_seconds") or not isinstance(v, (int, float)):
            continue
        parts.append(f"{k} {100 * v:.2f}%" if k.endswith("acc") else f"{k} {v:.4f}")
    return "  ".join(parts) + f"  {row.get('epoch_seconds', 0.0):.1f}s"


def _state(run_config, epoch, global_step, history, model, optimizer, scheduler, scaler, extra, rngs) -> dict:
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "extra": {name: obj.state_dict() for name, obj in extra.items()},
        "epoch": epoch, "global_step": global_step, "history": history, "config": run_config, "rng": rngs,
    }


def _restore(path, run_config, must_match, env, model, optimizer, scheduler, scaler, extra, epochs,
             limit_batches, steps) -> tuple[int, list, int]:
    ck = load_checkpoint(path, map_location="cpu")
    lacking = [k for k in ("model", "config", "epoch", "history", "rng") if k not in ck]
    if lacking:
        raise CheckpointError(f"checkpoint {path} is not a training run's (no {', '.join(lacking)})")
    saved = ck["config"]
    diff = [k for k in must_match if saved.get(k) != run_config.get(k)]
    if diff:
        raise CheckpointError(f"{path} was trained with a different " + ", ".join(
            f"{k} ({saved.get(k)!r}, now {run_config.get(k)!r})" for k in diff))
    saved_extra = ck.get("extra") or {}
    missing, unknown = sorted(set(extra) - set(saved_extra)), sorted(set(saved_extra) - set(extra))
    if missing or unknown:
        raise CheckpointError(f"{path}: extra state does not match the run's: "
                         + "; ".join([*([f"not in the checkpoint: {', '.join(missing)}"] if missing else []),
                                      *([f"not registered: {', '.join(unknown)}"] if unknown else [])]))
    if (ck.get("scheduler") is None) != (scheduler is None):
        raise CheckpointError(f"{path} was saved {'without' if ck.get('scheduler') is None else 'with'} a scheduler, "
                         f"this run has {'one' if scheduler is not None else 'none'}")
    model.load_state_dict(ck["model"])
    if optimizer is not None and ck.get("optimizer") is not None:
        optimizer.load_state_dict(ck["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(ck["scheduler"])
        if saved.get("epochs") != epochs or saved.get("limit_batches") != limit_batches:
            warnings.warn(f"resuming with epochs={epochs} (checkpoint planned {saved.get('epochs')}): the "
                          "schedule is stretched from here, so this is not the run an uninterrupted "
                          "job would have made", stacklevel=4)
            set_schedule_length(scheduler, epochs, steps)
    if scaler is not None and ck.get("scaler"):
        scaler.load_state_dict(ck["scaler"])
    for name, obj in extra.items():
        obj.load_state_dict(saved_extra[name])
    rngs = ck["rng"]
    if len(rngs) != env.world_size:
        warnings.warn(f"checkpoint has RNG states for {len(rngs)} ranks, this run has {env.world_size}: "
                      "the random stream will differ from an uninterrupted run", stacklevel=4)
    set_rng_state(rngs[env.rank] if env.rank < len(rngs) else rngs[0])
    epoch = int(ck["epoch"])
    return epoch, list(ck["history"]), int(ck.get("global_step", epoch * (steps or 0)))
