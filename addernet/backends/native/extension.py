"""Loads the compiled extension (``addernet._C``) once and remembers why it failed, if it did.

Importing ``addernet._C`` registers the ``torch.ops.addernet.*`` kernels with the dispatcher.
A missing build is not an error: the backend is unavailable, says why (``NATIVE_ERROR``), and the
registry's default falls back to the reference backend with one warning.
"""
from __future__ import annotations

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

# The extension is built into the addernet package itself (setup.py: addernet._C).
_PACKAGE = __package__.split(".")[0]
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
if importlib.util.find_spec(f"{_PACKAGE}._C") is None:
    NATIVE_ERROR = "addernet._C is not built"
    _other = shadowed_build(_PACKAGE_DIR, sys.path)
    if _other is not None:
        NATIVE_ERROR = (f"addernet._C is not built in {_PACKAGE_DIR}, a source "
                        f"checkout that shadows the installed build {_other}: run from another folder to "
                        "use that one, or build this one")
else:
    try:
        importlib.import_module(f"{_PACKAGE}._C")  # registers the ops
    except (ImportError, OSError) as exc:  # built against another torch, or a missing library
        NATIVE_ERROR = f"addernet._C failed to load ({type(exc).__name__}: {exc})"

def native_available() -> bool:
    return NATIVE_ERROR is None


def cuda_built() -> bool:
    """True when the extension was compiled with its CUDA kernels."""
    if not native_available():
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("addernet::adder_conv2d", "CUDA")


def build_hint() -> str:
    return _BUILD_HINT
