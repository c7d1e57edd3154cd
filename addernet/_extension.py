"""Loads the compiled extension once and remembers why it failed, if it did.

Importing ``addernet._C`` registers the ``torch.ops.addernet.*`` kernels with the dispatcher.
A missing build is not an error: the package falls back to the reference backend and warns once.
"""
from __future__ import annotations

import warnings

_BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` (or `make build`) from the "
    "torch-addernet source tree"
)

import importlib
import importlib.util

import torch  # noqa: F401  (loads libtorch/libc10, which _C links against, before _C itself)

NATIVE_ERROR: str | None = None
if importlib.util.find_spec(f"{__package__}._C") is None:
    NATIVE_ERROR = "addernet._C is not built"
else:
    try:
        importlib.import_module(f"{__package__}._C")  # registers the ops
    except (ImportError, OSError) as exc:  # built against another torch, or a missing library
        NATIVE_ERROR = f"addernet._C failed to load ({type(exc).__name__}: {exc})"

_warned = False


def native_available() -> bool:
    return NATIVE_ERROR is None


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    if not native_available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("addernet::adder_conv2d", "CUDA")


def warn_missing_native() -> None:
    global _warned
    if not _warned and NATIVE_ERROR is not None:
        _warned = True
        warnings.warn(
            "addernet's native extension is not available "
            f"({NATIVE_ERROR}); using the slow pure-PyTorch 'reference' backend. To get the fast "
            f"kernels, {_BUILD_HINT}.",
            RuntimeWarning,
            stacklevel=3,
        )


def build_hint() -> str:
    return _BUILD_HINT
