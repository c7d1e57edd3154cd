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
import importlib.machinery
import importlib.util
import os
import sys

import torch  # noqa: F401  (loads libtorch/libc10, which _C links against, before _C itself)



def shadowed_build(package_dir: str, search_path: list[str]) -> str | None:
    """The path of a built ``addernet/_C`` elsewhere on ``search_path``, if any: a source checkout
    that is imported first (python run from its root) hides an installed build."""
    here = os.path.realpath(package_dir)
    for entry in search_path:
        folder = os.path.join(entry or os.getcwd(), "addernet")
        if not os.path.isdir(folder) or os.path.realpath(folder) == here:
            continue
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            built = os.path.join(folder, "_C" + suffix)
            if os.path.isfile(built):
                return built
    return None


NATIVE_ERROR: str | None = None
if importlib.util.find_spec(f"{__package__}._C") is None:
    NATIVE_ERROR = "addernet._C is not built"
    _other = shadowed_build(os.path.dirname(__file__), sys.path)
    if _other is not None:
        NATIVE_ERROR = (f"addernet._C is not built in {os.path.dirname(os.path.abspath(__file__))}, a source "
                        f"checkout that shadows the installed build {_other}: run from another folder to "
                        "use that one, or build this one")
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
