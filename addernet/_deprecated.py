"""Names that moved keep working for one release, with a DeprecationWarning naming the new place.

Moved modules are aliased by an import hook rather than by files left at their old paths, so that
git still sees each move as a rename (and edits made elsewhere to the old file follow it).
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

# old module -> new module, for modules moved by the redesign (issue 23).
MOVED_MODULES = {
    "addernet.cli_checks": "addernet.cli.checks",
    "addernet.cli_info": "addernet.cli.info",
    "addernet.train.cli": "addernet.cli.train",
    # the native backend's modules, moved into backends/native/ (part 1)
    "addernet.ops": "addernet.backends.native.ops",
    "addernet.ops_u8": "addernet.backends.native.ops_u8",
    "addernet._extension": "addernet.backends.native.extension",
    "addernet._native_checks": "addernet.backends.native.checks",
    # the uint8 layer, moved to the other layer variants in nn/ (part 5), and the functional form it
    # needs, moved below both nn and quant so that neither imports the other back
    "addernet.quant.layer": "addernet.nn.quant_adder_conv",
    "addernet.quant.functional": "addernet.functional_u8",
}

_MISSING = object()


def warn_moved(old: str, new: str, stacklevel: int = 2) -> None:
    """The one deprecation message: ``old`` still works, ``new`` is where it lives now.
    ``stacklevel`` counts as ``warnings.warn``'s does, from the caller of this function."""
    warnings.warn(f"{old} moved to {new}; the old name goes in the next release", DeprecationWarning,
                  stacklevel=stacklevel + 1)


def moved_to(new_module: str | None, old_module: str, names=None):
    """A module ``__getattr__`` for ``old_module`` whose ``names`` (None: every name) now live in
    ``new_module``. The new module is imported on first use only, so a library module can point
    at the CLI layer above it without importing it. A moved submodule of ``old_module`` (in
    ``MOVED_MODULES``) is reached as an attribute too, as the old package allowed
    (``addernet.ops`` without ``import addernet.ops``): its stand-in, whose names warn on use."""

    def __getattr__(name: str):
        if f"{old_module}.{name}" in MOVED_MODULES:
            return importlib.import_module(f"{old_module}.{name}")
        if name.startswith("__") or new_module is None or (names is not None and name not in names):
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(new_module), name, _MISSING)
        if value is _MISSING:
            raise AttributeError(f"module {old_module!r} has no attribute {name!r}")
        warn_moved(f"{old_module}.{name}", f"{new_module}.{name}")
        return value

    return __getattr__


def moved_submodules(package: str):
    """The ``__getattr__`` of a package that only lost submodules (see ``moved_to``)."""
    return moved_to(None, package, ())


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import addernet.cli_checks`` gives a stand-in module whose every name forwards (with a
    warning) to ``addernet.cli.checks``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def exec_module(self, module) -> None:
        new = MOVED_MODULES[module.__name__]
        module.__doc__ = f"Moved to {new}; this name stays one release."
        module.__getattr__ = moved_to(new, module.__name__)


def install() -> None:
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # first: an old file left in another checkout must not win
