"""``fit``: a whole training run around a step, with checkpoints, exact resume, metrics and plots.

``fit(model, (train, test), step=..., epochs=..., out=...)`` needs no TrainConfig; ``fit(TrainConfig)``
is ``fit_config`` (``configured.py``: it builds the model and loaders the config names). Both
resolve the run once (``runtime``) and call the one loop (``engine.run_epochs``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .._deprecated import moved_to
from .callbacks import Callback
from .config import TrainConfig
from .configured import fit_config
from .engine import FitResult, Hooks, Log, Record, run_epochs
from .loop import Step
from .runtime import _split_loaders, plan_schedule, start_run
from .step import classification_step

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

    ``out``: the run folder (rank 0 writes): ``last.pt`` after every epoch, atomically, with the one
    before kept as ``previous.pt`` (a write that fails raises ``CheckpointWriteError`` and leaves both);
    ``metrics.json``/``.csv`` (one row per epoch: lr, ``train_<metric>``, ``test_<metric>``,
    epoch_seconds); ``curves.png``, ``summary.json``/``.md`` at the end. None writes nothing.
    ``resume``: True or a run folder (its ``last.pt``; fresh start if the folder holds none) or a
    checkpoint path. The checkpoint's SHA-256 and structure are checked first. Resume is bit for
    bit with ``num_workers=0`` loaders: model, optimiser, schedule, scaler, extra state, history and
    every RNG state come from the checkpoint, and the data order is re-seeded from (seed, epoch).
    ``seed`` seeds everything at the start. ``distributed``: join the torchrun process group, wrap
    the model in DDP, average metrics over ranks; the train loader must shard (``make_loaders(...,
    distributed=True)``), the group is left open (``distributed.cleanup()``). ``stop_after`` ends
    after that many epochs with the schedule still planned for ``epochs`` (to test resuming).

    ``fit(TrainConfig(...), model=..., loaders=...)`` is the CLI's run: the config names the data,
    model, recipe and folder (see ``TrainConfig``).
    """
    if isinstance(model_or_config, TrainConfig):
        given = dict(epochs=epochs, out=out, device=device, amp=amp, seed=seed, resume=resume, progress=progress,
                     limit_batches=limit_batches, distributed=distributed, lr=lr, momentum=momentum,
                     weight_decay=weight_decay, stop_after=stop_after, schedule=schedule)
        clash = [k for k, v in given.items() if v != _CONFIG_OWNS[k]]
        if clash:
            raise TypeError(f"fit(TrainConfig) takes {', '.join(clash)} from the config, not as keywords")
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
    hooks = Hooks(step, eval_step, callbacks, extra_state)
    run = start_run(device, amp, seed, distributed)
    loaders = _split_loaders(loaders)
    model = model.to(run.device)
    plan = plan_schedule(model, loaders[0], int(epochs), optimizer=optimizer, scheduler=scheduler, lr=lr,
                         momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                         limit_batches=limit_batches, stop_after=stop_after)
    run_config = {"epochs": int(epochs), "limit_batches": limit_batches, "seed": int(seed), "lr": float(lr),
                  "momentum": float(momentum), "weight_decay": float(weight_decay), "schedule": schedule,
                  "amp": str(amp), "model": type(model).__name__}
    record = Record(out, resume, run_config, ("seed", "model"), type(model).__name__, log, progress,
                    title=_fit_title(type(model).__name__, loaders[2], epochs, seed, lr if optimizer is None else None))
    return run_epochs(model, loaders, run, plan, hooks, record)


def _fit_title(tag: str, info, epochs, seed, lr) -> str:
    """What the curves of fit(model, loaders) show: the model, the data (if loaders carry a
    DatasetInfo), the epochs, the seed and the default recipe's lr."""
    data = f" on {info.name}" if info is not None and getattr(info, "name", None) else ""
    recipe = f", SGD lr {lr:g} cosine" if lr is not None else ""
    return f"{tag}{data}: {epochs} epoch{'s' * (epochs != 1)}, seed {seed}{recipe}"


# The run's helpers moved to runtime.py (fit and fit_config share them there); these stay a release.
__getattr__ = moved_to("addernet.train.runtime", __name__, ("epoch_seed", "pick_device", "seed_everything",
                                                           "set_loader_epoch"))
