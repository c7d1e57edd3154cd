"""Runs described by a ``TrainConfig`` (the CLI's): ``fit_config`` (also ``fit(TrainConfig)``) builds
the loaders and model the config names and runs the one loop (``engine.run_epochs``); ``compare``
trains the adder model and its CNN twin one after the other, with the side-by-side summary."""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data import make_loaders
from . import distributed as _dist
from .config import TrainConfig, resolve
from .engine import FitResult, Hooks, Record, run_epochs
from .model_factory import build_model
from .plots import plot_compare
from .runtime import _kind_of, _split_loaders, plan_schedule, start_run
from .step import classification_step
from .summary import write_summary

# Fields a checkpoint must agree on to be resumed; the rest (epochs, workers, progress...) may change.
_RESUME_MUST_MATCH = ("model", "kind", "data", "batch_size", "seed")


def _exact_test_shard(loader, env, batch_size, num_workers) -> DataLoader:
    # make_loaders' DistributedSampler pads the last shard with repeats; disjoint strided shards
    # make the averaged accuracy exact.
    ds = loader.dataset
    shard = Subset(ds, range(env.rank, len(ds), env.world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available())


def _resume_arg(cfg: TrainConfig):
    return cfg.resume if cfg.resume is True or cfg.resume in (False, None, "") else os.fspath(cfg.resume)


def fit_config(config: TrainConfig, *, model: Optional[nn.Module] = None, loaders=None,
               step=classification_step, eval_step=None, optimizer=None, scheduler=None, callbacks=(),
               extra_state=None, log: Optional[Callable[[str], None]] = print) -> FitResult:
    """Train one model (kind 'adder' or 'conv') as ``config`` says; see ``compare`` for 'both'.

    ``model``/``loaders`` (``(train, test, info)`` as ``make_loaders`` returns) replace the ones the
    config names; build the model after seeding if resume must be exact. The rest as ``fit``.
    """
    cfg = resolve(config)
    if cfg.kind == "both":
        raise ValueError("fit trains one kind; use compare() for kind='both'")
    hooks = Hooks(step, eval_step, callbacks, extra_state)
    run = start_run(cfg.device, cfg.amp, cfg.seed, cfg.distributed)
    env, device = run.env, run.device
    if loaders is None:
        loaders = make_loaders(cfg.data, cfg.data_root, cfg.batch_size, cfg.num_workers, seed=cfg.seed,
                               distributed=cfg.distributed)
    train_loader, test_loader, info = _split_loaders(loaders)
    if cfg.distributed and test_loader is not None:
        test_loader = _exact_test_shard(test_loader, env, cfg.batch_size, cfg.num_workers)
    if model is None:
        if info is None:
            raise ValueError("fit(TrainConfig) without a model needs loaders (train, test, info) to size it")
        model = build_model(cfg.model, num_classes=info.num_classes, kind=cfg.kind, in_channels=info.in_channels,
                            eta=cfg.eta)
    else:
        cfg = _label_with(cfg, model, info)
    tag = f"{cfg.kind} {cfg.model}"
    model = model.to(device)
    plan = plan_schedule(model, train_loader, cfg.epochs, optimizer=optimizer, scheduler=scheduler, lr=cfg.lr,
                         momentum=cfg.momentum, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                         limit_batches=cfg.limit_batches, stop_after=cfg.stop_after)
    intro = (f"{tag} on {cfg.data}: {cfg.epochs} epochs of {plan.steps} steps, batch {cfg.batch_size}"
             f"{f' x {env.world_size} processes' if env.world_size > 1 else ''}, lr {cfg.lr} {'constant' if cfg.schedule == 'constant' else 'cosine'}, "
             f"eta {cfg.eta}, seed {cfg.seed}, {device}{f', amp {run.amp}' if run.amp else ''} -> {cfg.out}")
    record = Record(cfg.out, _resume_arg(cfg), cfg.to_dict(), _RESUME_MUST_MATCH, tag, log, cfg.progress,
                    title=f"{tag} on {cfg.data}", header=_header(cfg, device), intro=intro, config=cfg)
    return run_epochs(model, (train_loader, test_loader, info), run, plan, hooks, record)


def _label_with(cfg: TrainConfig, model: nn.Module, info) -> TrainConfig:
    """The config as it describes the caller's ``model``: its kind, and the config's model name only
    if the model has the architecture that name builds (else its class name), so that the log, the
    summary and the checkpoint name what was trained."""
    kind = _kind_of(model)
    same = False
    if info is not None:
        try:
            with torch.device("meta"):  # shapes only: no memory, no init cost
                ref = build_model(cfg.model, num_classes=info.num_classes, kind=kind, in_channels=info.in_channels)
            shapes = lambda m: [(k, tuple(v.shape)) for k, v in m.state_dict().items()]  # noqa: E731
            same = type(ref) is type(model) and shapes(ref) == shapes(model)
        except Exception:  # a name the factory cannot build at these sizes: not the same model
            same = False
    return dataclasses.replace(cfg, model=cfg.model if same else type(model).__name__, kind=kind)


def _header(cfg: TrainConfig, device) -> dict:
    return {"model": cfg.model, "data": cfg.data, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "lr": cfg.lr, "eta": cfg.eta, "seed": cfg.seed, "device": str(device)}


def compare(config: TrainConfig, log: Optional[Callable[[str], None]] = print, **fit_kwargs) -> dict:
    """Train kind 'adder' then 'conv' (same seed, so the same data order) under ``out/adder`` and
    ``out/conv``; write ``summary.json``, ``summary.md`` and ``compare.png`` in ``out``.
    ``fit_kwargs`` go to ``fit_config`` (step, callbacks...). Returns {'adder': FitResult, 'conv': FitResult,
    'rows': [...], 'table': str, 'files': [the paths written]}."""
    cfg = resolve(config)
    if isinstance(cfg.resume, str) and os.path.isfile(cfg.resume):
        raise ValueError("with kind 'both', resume takes True or the --out folder, not one checkpoint file")
    results = {}
    for kind in ("adder", "conv"):
        resume = os.path.join(cfg.resume, kind) if isinstance(cfg.resume, str) and cfg.resume else cfg.resume
        if isinstance(resume, str) and not os.path.isdir(resume):
            resume = False
        sub = dataclasses.replace(cfg, kind=kind, out=os.path.join(cfg.out, kind), resume=resume)
        results[kind] = fit_config(sub, log=log, **fit_kwargs)
    rows = [r.summary_row() for r in results.values()]
    table = None
    files = [f for r in results.values() for f in r.files]
    if _dist.is_main():
        device = next(results["adder"].model.parameters()).device
        table = write_summary(cfg.out, rows, _header(cfg, device))
        plot_compare({k: r.history for k, r in results.items() if r.history}, os.path.join(cfg.out, "compare.png"),
                     title=f"{cfg.model} on {cfg.data}: adder vs conv",
                     resumed_at={k: r.resumed_at for k, r in results.items()})
        files += [os.path.join(cfg.out, name) for name in ("summary.json", "summary.md", "compare.png")]
    return {**results, "rows": rows, "table": table, "files": files}
