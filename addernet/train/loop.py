"""One epoch of training and one pass of evaluation: the pieces ``fit`` and the method pipelines share."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import amp as _amp
from .distributed import all_reduce_sum

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _progress(loader, enabled: bool, desc: str, total: Optional[int]):
    if not enabled:
        return loader
    from tqdm.auto import tqdm

    return tqdm(loader, desc=desc, total=total, leave=False, dynamic_ncols=True)


def _batches(loader, limit: Optional[int]) -> Optional[int]:
    try:
        n = len(loader)
    except TypeError:
        return limit
    return n if limit is None else min(n, limit)


def _is_ddp(model: nn.Module) -> bool:
    return isinstance(model, nn.parallel.DistributedDataParallel)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _on_device(batches, device: torch.device, limit_batches: Optional[int]):
    """Yields (index, x, y) with x and y moved to ``device``, stopping after ``limit_batches``."""
    for i, (x, y) in enumerate(batches):
        if limit_batches is not None and i >= limit_batches:
            break
        yield i, x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler=None,
                    device="cpu", amp=False, loss_fn: LossFn = F.cross_entropy, progress: bool = True, *,
                    scaler=None, limit_batches: Optional[int] = None, desc: str = "train",
                    reduce: Optional[bool] = None) -> dict:
    """Train over ``loader`` once; returns {'loss', 'acc', 'lr', 'samples', 'seconds'}.

    ``loss_fn(logits, targets)`` must average over the batch. ``scheduler`` is stepped after every
    batch unless it says ``per_step = False`` (then the caller steps it per epoch). ``amp``: see
    ``amp.amp_dtype``; under autocast the adder layers run in float32 (see ``amp``). ``scaler``: a
    GradScaler for float16 (``amp.make_scaler``). ``reduce``: sum loss and accuracy over all ranks
    (a collective every rank must join); by default when ``model`` is DDP-wrapped. 'lr' is the
    learning rate of the first group at the epoch's first step.
    Accuracy counts argmax hits, so it only means something for classification targets.
    """
    device = torch.device(device)
    dtype = _amp.amp_dtype(amp, device.type)
    if dtype == torch.float16 and scaler is None:
        raise ValueError("float16 autocast needs a GradScaler: pass scaler=amp.make_scaler(device, torch.float16)")
    step_sched = scheduler is not None and getattr(scheduler, "per_step", True)
    lr = optimizer.param_groups[0]["lr"]
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    total = _batches(loader, limit_batches)
    bar = _progress(loader, progress, desc, total)
    model.train()
    start = time.perf_counter()
    with _amp.adder_layers_in_weight_dtype(model) if dtype is not None else contextlib.nullcontext():
        for i, x, y in _on_device(bar, device, limit_batches):
            with _amp.autocast(device, dtype):
                out = model(x)
                loss = loss_fn(out, y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                _amp.restore_adder_grads(_unwrap(model), scaler.get_scale())
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            if step_sched:
                scheduler.step()
            with torch.no_grad():
                n = y.shape[0]
                sums[0] += loss.detach().double() * n
                if out.dim() == 2 and y.dim() == 1:
                    sums[1] += (out.argmax(1) == y).sum()
                sums[2] += n
            if progress and i % 10 == 0:
                bar.set_postfix(loss=f"{sums[0].item() / max(sums[2].item(), 1):.4f}")
    if progress:
        bar.close()
    if _is_ddp(model) if reduce is None else reduce:
        all_reduce_sum(sums)
    loss_sum, correct, count = sums.tolist()
    count = max(count, 1)
    return {"loss": loss_sum / count, "acc": correct / count, "lr": lr, "samples": int(count),
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def evaluate(model: nn.Module, loader, device="cpu", amp=False, loss_fn: LossFn = F.cross_entropy,
             progress: bool = False, *, limit_batches: Optional[int] = None, desc: str = "test",
             reduce: Optional[bool] = None) -> dict:
    """{'loss', 'acc', 'samples'} over ``loader`` in eval mode. ``reduce`` sums over ranks (by default
    when ``model`` is DDP-wrapped): give each rank a disjoint shard, or shared samples count twice."""
    device = torch.device(device)
    dtype = _amp.amp_dtype(amp, device.type)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    bar = _progress(loader, progress, desc, _batches(loader, limit_batches))
    try:
        with _amp.adder_layers_in_weight_dtype(model) if dtype is not None else contextlib.nullcontext():
            for _, x, y in _on_device(bar, device, limit_batches):
                with _amp.autocast(device, dtype):
                    out = model(x)
                    loss = loss_fn(out.float(), y)
                n = y.shape[0]
                sums[0] += loss.double() * n
                sums[1] += (out.argmax(1) == y).sum()
                sums[2] += n
    finally:
        if progress:
            bar.close()
        model.train(was_training)
    if _is_ddp(model) if reduce is None else reduce:
        all_reduce_sum(sums)
    loss_sum, correct, count = sums.tolist()
    count = max(count, 1)
    return {"loss": loss_sum / count, "acc": correct / count, "samples": int(count)}

