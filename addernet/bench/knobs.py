"""Process-wide switches a benchmark flips around one call: cuDNN's TF32 for convolutions, and
environment variables that a kernel reads (the native CUDA weight-gradient route)."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping

import torch


@contextlib.contextmanager
def scoped_env(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` updated with ``env`` inside the block; the old values (or their absence) after it."""
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def set_conv_tf32(on: bool) -> None:
    """cuDNN convolutions in TF32 (on) or full float32 (off).

    Only where cuDNN runs: without a GPU it leaves torch's process-wide flags alone (setting the
    conv flag alone leaves conv and RNN disagreeing, which torch.export then refuses in any later
    code of the same process)."""
    if not torch.cuda.is_available():
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


def with_tf32(fn, on: bool):
    """``fn`` run with cuDNN's TF32 ``on`` or off, whatever ran before it."""

    def run():
        set_conv_tf32(on)
        return fn()
    return run


def with_env(fn, env: Mapping[str, str]):
    """``fn`` run with ``env`` set, and cuDNN at full float32 (a route through cuDNN is then timed
    at the baseline's precision)."""

    def run():
        set_conv_tf32(False)
        with scoped_env(env):
            return fn()
    return run


def sync(device: str) -> None:
    """Waits for the device's queued work (CUDA runs asynchronously; the CPU does not)."""
    if device == "cuda":
        torch.cuda.synchronize()
