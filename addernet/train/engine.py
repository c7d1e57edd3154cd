"""The one epoch loop behind ``fit(model, loaders, ...)`` and ``fit_config(config)``: checkpoints
every epoch, exact resume, metrics, plots and DDP, on a resolved ``Run`` and ``Schedule``
(``runtime``), with the caller's ``Hooks`` (what each batch runs) and ``Record`` (what the run says
and writes)."""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from . import distributed as _dist
from .callbacks import Callback, TrainState
from .checkpoint import (LAST, PREVIOUS, WRITE_ERRNOS, CheckpointError, CheckpointWriteError, load_checkpoint,
                         rng_state, save_run_checkpoint, set_rng_state, verified)
from .checkpoint_checks import check_run_checkpoint, config_mismatch
from .costs import weight_layer_ops
from .loop import Step, evaluate, train_one_epoch
from .metrics import write_metrics
from .optim import set_schedule_length
from .plots import plot_curves
from .runtime import Run, Schedule, _kind_of, set_loader_epoch
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
    resumed_at: list = field(default_factory=list)  # epochs after which the run was resumed

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


@dataclass(frozen=True)
class Hooks:
    """What the loop runs: ``step(model, batch) -> StepOutput`` on each training batch,
    ``eval_step`` (default ``classification_step``) on the test loader, the callbacks, and the
    extra state saved in every checkpoint ({name: object with state_dict()/load_state_dict()})."""
    step: Step = classification_step
    eval_step: Optional[Step] = None
    callbacks: Sequence[Callback] = ()
    extra_state: Optional[dict] = None

    def __post_init__(self):
        object.__setattr__(self, "callbacks", tuple(self.callbacks))
        object.__setattr__(self, "extra_state", _check_extra(self.extra_state))


@dataclass(frozen=True)
class Record:
    """What the run says and writes: ``out`` the run folder (None writes nothing), ``resume``
    (False, True for out/last.pt, or a path), ``run_config`` saved in each checkpoint of which the
    ``must_match`` keys must agree to resume, ``tag`` naming the run in the log; ``title``,
    ``header``, ``intro`` override the plot title, the summary header and the first log line;
    ``config`` is the TrainConfig the result carries (None for ``fit(model, loaders)``)."""
    out: Optional[str]
    resume: Any
    run_config: dict
    must_match: tuple
    tag: str
    log: Log = print
    progress: bool = True
    title: Optional[str] = None
    header: Optional[dict] = None
    intro: Optional[str] = None
    config: Any = None


def run_epochs(model: nn.Module, loaders: tuple, run: Run, schedule: Schedule, hooks: Hooks,
               record: Record) -> FitResult:
    """Train ``model`` on ``loaders`` = (train, test, info) as ``schedule`` says, on ``run``'s
    device and ranks (``runtime.start_run`` has joined the process group and seeded)."""
    train_loader, test_loader, info = loaders
    env, device, dtype, scaler, seed = run.env, run.device, run.amp, run.scaler, run.seed
    optimizer, scheduler, epochs, steps = schedule.optimizer, schedule.scheduler, schedule.epochs, schedule.steps
    limit_batches, out, tag = schedule.limit_batches, record.out, record.tag
    extra, callbacks = hooks.extra_state, hooks.callbacks
    say = (record.log or (lambda _msg: None)) if env.is_main else (lambda _msg: None)
    model = model.to(device)
    for obj in extra.values():
        if isinstance(obj, nn.Module):
            obj.to(device)
    ops = weight_layer_ops(model, (info.in_channels, *info.image_size)) if info is not None else {}
    params = sum(p.numel() for p in model.parameters())
    if env.world_size > 1:
        # Same init everywhere (DDP broadcasts rank 0's anyway), but augmentation must differ by rank.
        torch.manual_seed(seed + 1_000_003 * env.rank)

    start_epoch, history, global_step, resumed_at = 0, [], 0, []
    path, fresh_if_missing = _resume_path(record.resume, out)
    if path is not None:
        if os.path.exists(path):
            start_epoch, history, global_step, resumed_at = _restore(
                path, record.run_config, record.must_match, env, model, optimizer, scheduler, scaler, extra, epochs,
                limit_batches, steps)
            resumed_at = [*resumed_at, start_epoch]
            say(f"resumed from {path} after epoch {start_epoch}")
        elif fresh_if_missing:
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
        say(record.intro or f"{tag}: {epochs} epochs of {steps} steps{ranks}, seed {seed}, {device}"
                     f"{f', amp {dtype}' if dtype else ''}{f' -> {out}' if out else ''}")
    written = []
    state = TrainState(start_epoch, global_step, model, optimizer, extra=extra, scheduler=scheduler, history=history)
    last = epochs if schedule.stop_after is None else min(epochs, schedule.stop_after)
    for epoch in range(start_epoch, last):
        state.epoch = epoch
        set_loader_epoch(train_loader, seed, epoch, env.rank)
        for cb in callbacks:
            cb.on_epoch_start(state)
        t0 = time.perf_counter()
        tr = train_one_epoch(net, train_loader, optimizer, scheduler, device, step=hooks.step, amp=dtype or False,
                             scaler=scaler, callbacks=callbacks, progress=record.progress and env.is_main,
                             limit_batches=limit_batches, desc=f"{tag} {epoch + 1}/{epochs}",
                             reduce=run.distributed, state=state)
        if scheduler is not None and not getattr(scheduler, "per_step", True):
            scheduler.step()
        if "loss" in tr and not np.isfinite(tr["loss"]):
            raise FloatingPointError(f"{tag}: training loss is {tr['loss']} in epoch {epoch + 1}; try a lower lr")
        row = {"epoch": epoch + 1, "lr": tr["lr"]}
        row.update({f"train_{k}": v for k, v in tr.items() if k not in ("lr", "samples", "seconds")})
        if test_loader is not None:
            _dist.broadcast_buffers(model)
            te = evaluate(model, test_loader, device, step=hooks.eval_step or classification_step,
                          amp=dtype or False, limit_batches=limit_batches, reduce=run.distributed)
            row.update({f"test_{k}": v for k, v in te.items() if k != "samples"})
        row["epoch_seconds"] = time.perf_counter() - t0
        for cb in callbacks:
            cb.on_epoch_end(state, row)
        history.append(row)
        rngs = _dist.gather_objects(rng_state())
        if env.is_main and out is not None:
            _write_epoch(out, history, {**_state(record.run_config, epoch + 1, state.global_step, history, model,
                                                 optimizer, scheduler, scaler, extra, rngs), "resumed_at": resumed_at})
            written.append(LAST)
        say(f"{tag} epoch {epoch + 1}/{epochs}  {describe_epoch(row)}")
        _dist.barrier()

    result = FitResult(model, history, record.config, out, ops, params, resumed_at=resumed_at)
    if env.is_main and history and out is not None:
        write_metrics(out, history)
        plot_curves(history, os.path.join(out, "curves.png"), title=record.title or tag, resumed_at=resumed_at)
        write_summary(out, [result.summary_row()], record.header or {"model": tag, "epochs": epochs, "seed": seed,
                                                               "device": str(device)})
        written += ["metrics.json", "metrics.csv", "curves.png", "summary.json", "summary.md"]
        result.files = [os.path.join(out, name) for name in dict.fromkeys(written)]
    return result


def _check_extra(extra_state: Optional[dict]) -> dict:
    extra = dict(extra_state or {})
    for name, obj in extra.items():
        if not (callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "load_state_dict", None))):
            raise TypeError(f"extra_state[{name!r}] ({type(obj).__name__}) needs state_dict() and load_state_dict()")
    return extra


def _resume_path(resume, out: Optional[str]) -> tuple[Optional[str], bool]:
    """(checkpoint path, whether a missing one means a fresh start): a folder's last.pt, or its
    previous.pt if only that is left (a crash between the two renames of a filesystem without
    hard links)."""
    if resume in (False, None, ""):
        return None, False
    if resume is True:
        if out is None:
            raise ValueError("resume=True reads out/last.pt: give out, or resume=<checkpoint path>")
        folder = out
    else:
        folder = os.fspath(resume)
        if not os.path.isdir(folder):
            return folder, False
    last, prev = os.path.join(folder, LAST), os.path.join(folder, PREVIOUS)
    return (prev if not os.path.exists(last) and os.path.exists(prev) else last), True


def _write_epoch(out: str, history: list, state: dict) -> None:
    """last.pt (keeping previous.pt), then the metrics. A full disk or an I/O error raises
    ``CheckpointWriteError`` saying what is intact: the atomic writes leave the old files whole."""
    try:
        save_run_checkpoint(state, out)
        write_metrics(out, history)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        done = len(history) - 1
        kept = (f"the checkpoint and metrics of epoch {done} in {out} are intact; free space and resume with "
                f"--resume (fit(..., resume=True))" if done else f"nothing was written to {out} before it")
        err = CheckpointWriteError(f"could not write epoch {len(history)}'s checkpoint in {out}: "
                                   f"{e.strerror or e}; {kept}")
        err.errno = e.errno
        raise err from e


def describe_epoch(row: dict) -> str:
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
             limit_batches, steps) -> tuple[int, list, int, list]:
    ck = load_checkpoint(path, map_location="cpu")
    # A run of another model or kind is named as such ("kind ('adder', now 'conv')") before the
    # structure check, which would only list the tensors that differ; every other problem is listed
    # together, one line each.
    if isinstance(ck.get("config"), dict):
        config_mismatch(path, ck["config"], run_config, must_match)
    check_run_checkpoint(ck, path, model=model, optimizer=optimizer)
    if not verified(ck):
        warnings.warn(f"{path} has no SHA-256 (written before addernet kept one): its content cannot be "
                      "verified, only its structure", stacklevel=4)
    saved = ck["config"]
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
    return (epoch, list(ck["history"]), int(ck.get("global_step", epoch * (steps or 0))),
            [int(e) for e in ck.get("resumed_at", [])])
