"""One epoch of training and one pass of evaluation, around a ``step``: the pieces ``fit`` and the
method pipelines share."""
from __future__ import annotations

import itertools
import math
import time
from typing import Callable, Iterable, Optional, Sequence

import torch
from torch import nn

from .._progress import progress
from . import amp as _amp
from .callbacks import Callback, TrainState
from .distributed import active, all_reduce_sum, gather_objects
from .step import StepOutput, classification_step

Step = Callable[[nn.Module, object], StepOutput]


def _progress(loader, enabled: bool, desc: str, total: Optional[int]):
    return progress(loader, enabled, desc, total)


def _batches(loader, limit: Optional[int]) -> Optional[int]:
    try:
        n = len(loader)
    except TypeError:
        return limit
    return n if limit is None else min(n, limit)


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model) if _is_ddp(model) else model


def to_device(batch, device: torch.device):
    """``batch`` with every tensor in it (through tuples, lists and dicts) moved to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        moved = [to_device(v, device) for v in batch]
        return tuple(moved) if isinstance(batch, tuple) else moved
    return batch


def _batch_size(batch) -> int:
    if isinstance(batch, (tuple, list)) and batch:
        first = batch[0]
    elif isinstance(batch, dict):
        first = next((v for v in batch.values() if torch.is_tensor(v)), None)
    else:
        first = batch
    if first is None or not hasattr(first, "__len__"):
        raise ValueError("cannot tell this batch's size: return StepOutput(..., batch_size=n) from the step")
    return len(first)


class MetricMeter:
    """Batch-size-weighted means of a step's metrics over an epoch, summed over DDP ranks on demand.

    Sums stay on the device as float64 tensors, so a step costs no host sync.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, float] = {}
        self.samples = 0

    def add(self, metrics: dict, n: int) -> None:
        self.samples += n
        for k, v in metrics.items():
            if torch.is_tensor(v):
                if v.numel() != 1:
                    raise ValueError(f"metric {k!r} must be a scalar (a batch mean), got shape {tuple(v.shape)}")
                v = v.detach().reshape(()).to(self.device, torch.float64)
            else:
                v = torch.tensor(float(v), dtype=torch.float64, device=self.device)
            if k in self.sums:
                self.sums[k] += v * n
            else:
                self.sums[k] = v * n
            self.weights[k] = self.weights.get(k, 0.0) + n

    def mean(self, key: str) -> float:
        return (self.sums[key] / max(self.weights[key], 1)).item()

    def result(self, reduce: bool = False) -> dict:
        """{metric: weighted mean, ..., 'samples': n}. ``reduce`` sums over ranks: a collective every
        rank must join; ranks may have seen different metric names."""
        keys = _ordered(self.sums)
        if reduce and active():
            keys = _ordered(set().union(*map(set, gather_objects(keys))))
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        vec = torch.stack([self.sums.get(k, zero) for k in keys]
                          + [torch.tensor(float(self.weights.get(k, 0.0)), dtype=torch.float64, device=self.device)
                             for k in keys]
                          + [torch.tensor(float(self.samples), dtype=torch.float64, device=self.device)])
        if reduce:
            all_reduce_sum(vec)
        vals = vec.tolist()
        n = len(keys)
        out = {k: (vals[i] / vals[n + i] if vals[n + i] else math.nan) for i, k in enumerate(keys)}
        out["samples"] = int(vals[-1])
        return out


def _ordered(names) -> list[str]:
    # loss, then acc, then the rest alphabetically: the order of the log line and metrics.json
    return sorted(names, key=lambda n: ({"loss": 0, "acc": 1}.get(n, 2), n))


def _run_step(step: Step, model, batch, device, dtype) -> StepOutput:
    with _amp.autocast_model(model, device, dtype):
        out = step(model, batch)
    if not isinstance(out, StepOutput):
        raise TypeError(f"a step must return a StepOutput, got {type(out).__name__}")
    return out


def train_one_epoch(model: nn.Module, loader, optimizer: Optional[torch.optim.Optimizer], scheduler=None,
                    device="cpu", *, step: Step = classification_step, amp=False, scaler=None,
                    callbacks: Sequence[Callback] = (), progress: bool = True, limit_batches: Optional[int] = None,
                    desc: str = "train", reduce: Optional[bool] = None, state: Optional[TrainState] = None) -> dict:
    """Train over ``loader`` once; returns the step's metrics averaged over the epoch (weighted by
    batch size) plus 'lr', 'samples' and 'seconds'.

    Every tensor of each batch (through tuples, lists, dicts) is moved to ``device``, and
    ``step(model, batch)`` runs inside ``mixed_precision(model, device, amp)``. When it returns a loss
    the loop zeroes the gradients, backpropagates (through ``scaler``, a GradScaler for float16,
    ``amp.make_scaler``) and steps ``optimizer``; a loss of None means the step updated by itself.
    A loss with no 'loss' metric is logged as 'loss'. ``scheduler`` is stepped after every batch
    unless it says ``per_step = False`` (then the caller steps it per epoch). ``callbacks`` get
    ``on_step(state, out)`` after each batch; ``state`` (a TrainState, made if None) has its
    ``global_step`` advanced. ``reduce``: average the metrics over all ranks (a collective every rank
    must join); by default when ``model`` is DDP-wrapped. 'lr' is the first group's at the first step.
    ``progress``: a tqdm bar, when stderr is a terminal.
    """
    device = torch.device(device)
    dtype = _amp.amp_dtype(amp, device.type)
    if dtype == torch.float16 and scaler is None:
        raise ValueError("float16 autocast needs a GradScaler: pass scaler=amp.make_scaler(device, torch.float16)")
    step_sched = scheduler is not None and getattr(scheduler, "per_step", True)
    lr = optimizer.param_groups[0]["lr"] if optimizer is not None else math.nan
    if state is None:
        state = TrainState(0, 0, _unwrap(model), optimizer, scheduler=scheduler)
    meter = MetricMeter(device)
    total = _batches(loader, limit_batches)
    bar = _progress(loader, progress, desc, total)
    batches: Iterable = bar if limit_batches is None else itertools.islice(bar, limit_batches)
    model.train()
    start = time.perf_counter()
    try:
        for i, batch in enumerate(batches):
            batch = to_device(batch, device)
            out = _run_step(step, model, batch, device, dtype)
            if out.loss is not None:
                if optimizer is None:
                    raise ValueError("the step returned a loss but train_one_epoch has no optimizer to step")
                _amp.optimizer_step(out.loss, optimizer, scaler=scaler, model=model)
                if "loss" not in out.metrics:
                    out.metrics["loss"] = out.loss.detach()
            if step_sched:
                scheduler.step()
            n = out.batch_size if out.batch_size is not None else _batch_size(batch)
            meter.add(out.metrics, n)
            state.global_step += 1
            for cb in callbacks:
                cb.on_step(state, out)
            if bar is not loader and i % 10 == 0 and "loss" in meter.sums:
                bar.set_postfix(loss=f"{meter.mean('loss'):.4f}")
    finally:
        if bar is not loader:
            bar.close()
    res = meter.result(_is_ddp(model) if reduce is None else reduce)
    return {**res, "lr": lr, "seconds": time.perf_counter() - start}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device="cpu", *, step: Step = classification_step, amp=False,
             progress: bool = False, limit_batches: Optional[int] = None, desc: str = "test",
             reduce: Optional[bool] = None) -> dict:
    """The step's metrics averaged over ``loader`` (weighted by batch size), in eval mode and under
    no_grad, plus 'samples'. The default step gives 'loss' and 'acc'. ``reduce`` averages over ranks
    (by default when ``model`` is DDP-wrapped): give each rank a disjoint shard of the data (or the
    whole set: a mean is unchanged by repeats, but a padded shard's repeats count twice)."""
    device = torch.device(device)
    dtype = _amp.amp_dtype(amp, device.type)
    was_training = model.training
    model.eval()
    meter = MetricMeter(device)
    bar = _progress(loader, progress, desc, _batches(loader, limit_batches))
    batches: Iterable = bar if limit_batches is None else itertools.islice(bar, limit_batches)
    try:
        for batch in batches:
            batch = to_device(batch, device)
            out = _run_step(step, model, batch, device, dtype)
            if out.loss is not None and "loss" not in out.metrics:
                out.metrics["loss"] = out.loss.detach()
            meter.add(out.metrics, out.batch_size if out.batch_size is not None else _batch_size(batch))
    finally:
        if bar is not loader:
            bar.close()
        model.train(was_training)
    return meter.result(_is_ddp(model) if reduce is None else reduce)
