"""Unpickling that cannot run code, for the CIFAR python batches.

A pickle may name any importable callable and have the loader call it (e.g.
``os.system``), so ``pickle.load`` on a file someone handed you is arbitrary
code execution. The CIFAR batches are only dicts of lists, bytes and numpy
arrays, so the unpickler below resolves nothing but the few numpy globals that
rebuild arrays (plus ``_codecs.encode``, which protocol-2 pickles use for
bytes); anything else raises ``pickle.UnpicklingError`` before it is called.
"""

import codecs
import importlib
import pickle

import numpy as np


def _numpy_attr(modules, name):
    # numpy 2 moved numpy.core -> numpy._core; old pickles still name numpy.core.
    for mod in modules:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    return None


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")
_NUMERIC = ("numpy._core.numeric", "numpy.core.numeric")

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _mod in _MULTIARRAY:
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(_mod, _name)] = _numpy_attr(_MULTIARRAY, _name)
for _mod in _NUMERIC:
    _ALLOWED[(_mod, "_frombuffer")] = _numpy_attr(_NUMERIC, "_frombuffer")


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy array "
                f"reconstruction is allowed in dataset pickles")
        return obj


def safe_load(path):
    """Load a pickle file with the restricted unpickler. ``latin1`` is what numpy
    documents for Python-2 pickles (the official CIFAR files): byte strings
    inside arrays round-trip exactly, and Python-3 bytes keys stay bytes."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()
