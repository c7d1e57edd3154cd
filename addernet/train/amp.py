"""Mixed precision for models that hold adder layers.

AdderConv2d is not registered with autocast, and the op wants input and weight in one dtype. So
under autocast the adder layers run in their weight's dtype (float32): a forward pre-hook casts
their input up. That is also the safe choice numerically: an adder output is a sum of many absolute
differences, which fp16 would round coarsely.

float16 needs a GradScaler, and the adaptive scaling (eta) normalises each adder weight's gradient
to eta * sqrt(numel) whatever the loss scale was. ``unscale_`` would then divide it by the loss
scale a second time, so ``restore_adder_grads`` multiplies it back. bfloat16 needs no scaler.

Any loop uses the policy the same way::

    with mixed_precision(model, device, amp):      # autocast + adder layers in their weight dtype
        loss = loss_fn(model(x), y)
    optimizer_step(loss, optimizer, scaler=scaler, model=model)   # zero_grad, backward, (un)scale, step
"""
from __future__ import annotations

import contextlib
from typing import Optional, Union

import torch
from torch import nn

from ..nn import AdderConv2d

AmpSpec = Union[bool, str, torch.dtype, None]


def amp_dtype(amp: AmpSpec, device_type: str) -> Optional[torch.dtype]:
    """None (off), torch.bfloat16 or torch.float16. True/'auto' means bfloat16 on CPU and on GPUs
    that support it, else float16."""
    if amp in (False, None, "off", "none", ""):
        return None
    if isinstance(amp, torch.dtype):
        return amp
    if amp in ("bf16", "bfloat16"):
        return torch.bfloat16
    if amp in ("fp16", "float16", "half"):
        if device_type == "cpu":
            raise ValueError("--amp fp16 is for CUDA; use --amp bf16 on CPU")
        return torch.float16
    if amp in (True, "auto"):
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            return torch.float16
        return torch.bfloat16
    raise ValueError(f"amp must be one of off, auto, bf16, fp16; got {amp!r}")


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _cast_input(module: AdderConv2d, args):
    x = args[0]
    if torch.is_tensor(x) and x.dtype != module.weight.dtype:
        return (x.to(module.weight.dtype), *args[1:])
    return None


@contextlib.contextmanager
def adder_layers_in_weight_dtype(model: nn.Module):
    """While active, every AdderConv2d casts its input to its weight's dtype."""
    handles = [m.register_forward_pre_hook(_cast_input) for m in model.modules() if isinstance(m, AdderConv2d)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def mixed_precision(model: nn.Module, device: Union[str, torch.device], amp: AmpSpec):
    """The adder mixed-precision policy for one forward (and loss): autocast to ``amp_dtype(amp)``
    and every AdderConv2d of ``model`` fed in its weight's dtype. A no-op when ``amp`` is off.

    ``amp``: False/None (off), True/'auto', 'bf16', 'fp16' or a torch dtype. float16 also needs a
    GradScaler for the backward (``make_scaler``, ``optimizer_step``). Run ``backward`` outside the
    block, as autocast recommends.
    """
    device = torch.device(device)
    with autocast_model(model, device, amp_dtype(amp, device.type)):
        yield


@contextlib.contextmanager
def autocast_model(model: nn.Module, device: torch.device, dtype: Optional[torch.dtype]):
    """``mixed_precision`` for a dtype already resolved (None: off), as the loops hold it."""
    if dtype is None:
        yield
        return
    with adder_layers_in_weight_dtype(model), autocast(device, dtype):
        yield


def make_scaler(device: Union[str, torch.device], dtype: AmpSpec):
    """A GradScaler for float16, None otherwise. ``dtype`` may also be an ``amp`` spec ('fp16')."""
    device = torch.device(device)
    if not isinstance(dtype, torch.dtype) and dtype is not None:
        dtype = amp_dtype(dtype, device.type)
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


def restore_adder_grads(model: nn.Module, scale: float, optimizer: Optional[torch.optim.Optimizer] = None) -> None:
    """Undo ``unscale_`` on eta-normalised adder weight gradients (see the module docstring).

    With several optimisers (a generator's and a discriminator's), pass the one just unscaled:
    only the adder weights it holds are restored, so a later ``unscale_`` of another optimiser
    does not see them restored twice.
    """
    held = None
    if optimizer is not None:
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    for m in model.modules():
        if isinstance(m, AdderConv2d) and m.eta is not None and m.weight.grad is not None:
            if held is None or id(m.weight) in held:
                m.weight.grad.mul_(scale)


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, *, scaler=None,
                   model: Optional[nn.Module] = None) -> None:
    """zero_grad, backward, step: the update every loop makes, with a GradScaler when given.

    Under a scaler the gradients are unscaled before the step and ``model``'s eta-normalised adder
    gradients restored (``restore_adder_grads``); pass the model that ``optimizer`` trains.
    ``scaler.update()`` runs after the step; with several optimisers on one scaler, call the
    pieces yourself and update once per iteration.
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
        return
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    if model is not None:
        restore_adder_grads(getattr(model, "module", model), scaler.get_scale(), optimizer)
    scaler.step(optimizer)
    scaler.update()
