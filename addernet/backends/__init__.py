"""Backend selection for the adder convolution.

A backend is picked, from the most to the least specific: the ``backend=`` argument of a call,
the innermost ``use_backend(...)`` block, ``set_backend(...)``, the ``ADDERNET_BACKEND``
environment variable, then the default ('native' when built, else 'reference' with one warning).

- ``reference``: pure PyTorch (unfold); the definition. Always available.
- ``native``: the C++ extension (CPU kernels, and CUDA kernels when built with CUDA).
- ``triton``: Triton kernels; on a GPU, or on CPU tensors under ``TRITON_INTERPRET=1``.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Callable, Iterator

from .. import _extension

ALL = ("native", "triton", "reference")

# use_backend blocks are per thread, as torch's own context managers are: a block in one thread
# does not change what another thread runs. torch.compile traces reads of a threading.local
# without a graph break (it guards on the value, so a new choice recompiles). A ContextVar would
# break the graph. set_backend stays process-wide, as documented.
_local = threading.local()
_global: str | None = None


def _stack() -> list[str]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _triton_status() -> tuple[bool, str]:
    try:
        from . import triton as _tb
    except ImportError as exc:  # triton not installed
        return False, f"triton is not importable ({exc})"
    return _tb.status()


def why_unavailable(name: str) -> str | None:
    """None when ``name`` can run here, else the reason it cannot."""
    if name == "reference":
        return None
    if name == "native":
        if _extension.native_available():
            return None
        return f"{_extension.NATIVE_ERROR}; {_extension.build_hint()}"
    if name == "triton":
        ok, why = _triton_status()
        return None if ok else why
    return f"unknown backend {name!r}; choose one of {', '.join(ALL)}"


def available() -> list[str]:
    """The backends that can run in this process, fastest first."""
    return [b for b in ALL if why_unavailable(b) is None]


def _check(name: str) -> str:
    why = why_unavailable(name)
    if why is not None:
        raise RuntimeError(f"addernet backend {name!r} is not available: {why}")
    return name


def set_backend(name: str | None) -> None:
    """Choose the process-wide backend; None restores the default."""
    global _global
    _global = None if name is None else _check(name)


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Use ``name`` for the adder layers called inside the block, in this thread."""
    stack = _stack()
    stack.append(_check(name))
    try:
        yield
    finally:
        stack.pop()


def current(explicit: str | None = None) -> str:
    if explicit is not None:
        return _check(explicit)
    stack = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    if _global is not None:
        return _global
    env = os.environ.get("ADDERNET_BACKEND")
    if env:
        return _check(env)
    if _extension.native_available():
        return "native"
    _extension.warn_missing_native()
    return "reference"


def implementation(name: str) -> Callable:
    """The function (x, weight, stride, padding, dilation, groups) -> y of a backend."""
    if name == "native":
        from .native import adder_conv2d
    elif name == "triton":
        from .triton import adder_conv2d
    else:
        from .reference import adder_conv2d
    return adder_conv2d
