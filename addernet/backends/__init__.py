"""The op backends: a registry of descriptors, and which one runs.

Each backend is a module or package in this folder that publishes a ``Backend`` descriptor
(registry.py): name, availability and why not, devices and dtypes, and a table of the ops it
implements. ``REGISTRY`` below holds one line per backend, in order of preference. Everything
above this package asks ``op(key, backend, device)`` for an op and never names a backend.

A backend is picked, from the most to the least specific: the ``backend=`` argument of a call,
the innermost ``use_backend(...)`` block, ``set_backend(...)``, the ``ADDERNET_BACKEND``
environment variable, then the default: the first available backend marked ``auto`` (the native
extension when built; else the reference, with one warning).

- ``native``: the C++ extension (CPU kernels, and CUDA kernels when built with CUDA).
- ``triton``: Triton kernels; on a GPU, or on CPU tensors under ``TRITON_INTERPRET=1``.
- ``reference``: pure PyTorch (unfold); the definition, and the fallback of every op.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings
from typing import Callable, Iterator

from .._deprecated import warn_moved
from .registry import OPS, Backend, eager, lazy

__all__ = ["Backend", "OPS", "REFERENCE", "REGISTRY", "available", "current", "descriptor", "op",
           "set_backend", "use_backend", "why_unavailable"]

# The definition: it implements every op on every device, and the others fall back to it.
REFERENCE = "reference"

REGISTRY: dict[str, Callable[[], Backend]] = {
    "native": eager(".native"),  # registers its ops with torch on import, so loaded with addernet
    "triton": lazy(".triton"),  # imports triton and fixes the interpreter choice: on first use
    REFERENCE: eager(".reference"),
}

# use_backend blocks are per thread, as torch's own context managers are: a block in one thread
# does not change what another thread runs. torch.compile traces reads of a threading.local
# without a graph break (it guards on the value, so a new choice recompiles). A ContextVar would
# break the graph. set_backend stays process-wide, as documented.
_local = threading.local()
_global: str | None = None
_warned: set[str] = set()


def __getattr__(name: str):
    if name == "ALL":  # deprecated: the registry's names, fixed at the time of the call
        warn_moved(f"{__name__}.ALL", f"tuple({__name__}.REGISTRY)")
        return tuple(REGISTRY)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def descriptor(name: str) -> Backend:
    """The descriptor of backend ``name``; ValueError for a name the registry does not hold."""
    try:
        load = REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}") from None
    return load()


def why_unavailable(name: str) -> str | None:
    """None when ``name`` can run here, else the reason it cannot."""
    if name not in REGISTRY:
        return f"unknown backend {name!r}; choose one of {', '.join(REGISTRY)}"
    return descriptor(name).why_unavailable()


def available() -> list[str]:
    """The backends that can run in this process, in order of preference (fastest first)."""
    return [b for b in REGISTRY if why_unavailable(b) is None]


def _check(name: str) -> str:
    why = why_unavailable(name)
    if why is not None:
        raise RuntimeError(f"addernet backend {name!r} is not available: {why}")
    return name


def _stack() -> list[str]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


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


def _default() -> str:
    skipped = []
    for name in REGISTRY:
        d = descriptor(name)
        if not d.auto:
            continue
        why = d.why_unavailable()
        if why is None:
            for s, reason in skipped:  # a preferred backend is missing: say so once
                if s not in _warned:
                    _warned.add(s)
                    warnings.warn(f"addernet's {s} backend is not available ({reason}); using the "
                                  f"slower {name!r} backend instead.", RuntimeWarning, stacklevel=4)
            return name
        skipped.append((name, why))
    return REFERENCE


def current(explicit: str | None = None) -> str:
    """The backend a call made now runs on (``explicit`` wins when given)."""
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
    return _default()


def provider(key: str, backend: str | None = None, device: str | None = None) -> str:
    """The backend that runs op ``key`` for tensors on ``device`` (a device type): the chosen
    backend when its table has the op there, else the reference. The one fallback rule."""
    name = current(backend)
    if descriptor(name).implements(key, device):
        return name
    if descriptor(REFERENCE).implements(key, device):
        return REFERENCE
    where = f" on {device}" if device else ""
    raise NotImplementedError(f"addernet op {key!r} is implemented{where} neither by backend {name!r} "
                              f"nor by the {REFERENCE!r} backend")


def op(key: str, backend: str | None = None, device=None) -> Callable:
    """The function that runs op ``key`` (registry.OPS lists the keys and call forms) on the chosen
    backend, for tensors on ``device`` (a torch.device or device type; None: any)."""
    device = getattr(device, "type", device)
    return descriptor(provider(key, backend, device)).ops[key]


def implementation(name: str) -> Callable:
    """Deprecated (use ``op``): the function (x, weight, stride, padding, dilation, groups,
    grad_mode="paper") -> y of backend ``name``."""
    warn_moved(f"{__name__}.implementation(name)", f"{__name__}.op(key, backend, device)")
    ops = descriptor(name).ops

    def adder_conv2d(x, weight, stride, padding, dilation, groups, grad_mode="paper"):
        fn = ops["adder_conv2d_exact" if grad_mode == "exact" else "adder_conv2d"]
        return fn(x, weight, stride, padding, dilation, groups)

    return adder_conv2d

