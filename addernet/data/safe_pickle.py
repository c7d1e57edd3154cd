"""Unpickling that can build nothing but what a CIFAR python batch holds.

A pickle may name any importable callable and have the loader call it (e.g. ``os.system``), so
``pickle.load`` on a file someone handed you is arbitrary code execution. Restricting the globals
to numpy's array reconstruction is not enough either: ``ndarray.__setstate__`` accepts an object
dtype over raw bytes, which makes numpy dereference pointers forged by the file.

A CIFAR batch is a dict of lists (ints, strings), strings, bytes and numeric numpy arrays. So:
- the only globals are numpy's array reconstructors, ``numpy.dtype``, and ``_codecs.encode`` and
  ``bytes()`` (which protocol-2 pickles use for bytes), each replaced by a stand-in that checks its
  arguments;
- a dtype is never built by numpy's own ``__setstate__``: the stand-in records the type code and
  byte order, and only plain numeric codes (bool, int, uint, float, complex) become a dtype;
- an array's state is checked (shape, dtype, data length) before numpy sees it;
- the loaded object is walked, and anything but dicts, lists, str, bytes, int and numeric arrays
  is refused.
Anything else raises ``pickle.UnpicklingError``.
"""

import codecs
import io
import math
import pickle
import reprlib

from struct import error as struct_error

import numpy as np

_NUMERIC_KINDS = "biufc"
_MAX_DEPTH = 32


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60


def _refuse(what: str):
    raise pickle.UnpicklingError(f"refusing to load {what}: only CIFAR-style batches (dicts, lists, "
                                 f"str, bytes, int and numeric numpy arrays) are allowed in dataset pickles")


class _DtypeSpec:
    """What ``numpy.dtype(code, align, copy)`` plus its BUILD state asked for, not yet a dtype."""

    def __init__(self, code, align=False, copy=False, *rest):
        if not isinstance(code, str) or rest:
            _refuse(f"numpy.dtype{_repr.repr((code, align, copy) + rest)}")
        try:
            dt = np.dtype(code)
        except TypeError:
            _refuse(f"numpy.dtype({_repr.repr(code)})")
        if dt.kind not in _NUMERIC_KINDS or dt.hasobject or dt.fields is not None or dt.subdtype is not None:
            _refuse(f"numpy.dtype({_repr.repr(code)}) (only numeric dtypes)")
        self.dtype = dt

    def __setstate__(self, state):
        # (version, byte order, subarray, names, fields, itemsize, alignment, flags[, metadata]):
        # a numeric dtype has no subarray, names or fields; only the byte order is taken.
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[1] not in "<>|=" \
                or any(s is not None for s in state[2:5]):
            _refuse(f"a numpy dtype state {_repr.repr(state)}")
        self.dtype = self.dtype.newbyteorder(state[1]) if state[1] in "<>" else self.dtype


def _as_dtype(spec) -> np.dtype:
    if not isinstance(spec, _DtypeSpec):
        _refuse(f"an array with dtype {_repr.repr(spec)}")
    return spec.dtype


def _checked_shape(shape) -> tuple:
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 32:
        _refuse(f"an array of shape {_repr.repr(shape)}")
    return shape


def _as_bytes(raw) -> bytes:
    if isinstance(raw, str):  # Python-2 pickles carry array data as latin1 str
        return raw.encode("latin1")
    if isinstance(raw, (bytes, bytearray)):
        return bytes(raw)
    if isinstance(raw, pickle.PickleBuffer):
        return bytes(raw.raw())
    _refuse(f"array data of type {type(raw).__name__}")


def _array(raw, dtype: np.dtype, shape: tuple, fortran: bool) -> np.ndarray:
    data = _as_bytes(raw)
    if len(data) != math.prod(shape) * dtype.itemsize:
        _refuse(f"an array of shape {shape} and dtype {dtype} over {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


class _ArrayStub:
    """What ``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')`` returns here: a placeholder
    that BUILD fills with a checked array (read back by ``_finish``)."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            _refuse(f"an array state of type {type(state).__name__}")
        shape, spec, fortran, raw = state[-4:]
        if type(fortran) is not bool:
            _refuse(f"an array state with is_fortran={_repr.repr(fortran)}")
        self.array = _array(raw, _as_dtype(spec), _checked_shape(shape), fortran)


class _NdarrayName:
    """Stands for ``numpy.ndarray`` in a pickle: _reconstruct's first argument, never callable
    (``ndarray(shape, 'O', buffer)`` would build an object array over the file's bytes)."""

    def __call__(self, *args, **kwargs):
        _refuse("a call of numpy.ndarray")

    def __repr__(self):
        return "numpy.ndarray"


_NDARRAY = _NdarrayName()


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY or not isinstance(typecode, (bytes, str)):  # py2 pickles: str
        _refuse(f"_reconstruct({_repr.repr(cls)}, ...)")
    return _ArrayStub()


def _frombuffer(buf, spec, shape, order):
    # numpy's protocol-5 path: ``_frombuffer(buffer, dtype, shape, order)``.
    if order not in ("C", "F"):
        _refuse(f"an array in order {_repr.repr(order)}")
    stub = _ArrayStub()
    stub.array = _array(buf, _as_dtype(spec), _checked_shape(shape), order == "F")
    return stub


def _encode(text, encoding="utf-8"):
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        _refuse(f"_codecs.encode({type(text).__name__}, {_repr.repr(encoding)})")
    return codecs.encode(text, encoding)


def _empty_bytes(*args):
    # Protocol 2 writes b"" as a call of bytes() with no arguments.
    if args:
        _refuse("bytes() with arguments")
    return b""


_ALLOWED = {
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _encode,
}
for _mod in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2 renamed numpy.core
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
for _mod in ("numpy._core.numeric", "numpy.core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only numpy array "
                f"reconstruction is allowed in dataset pickles")
        return obj

    def persistent_load(self, pid):
        _refuse(f"persistent id {_repr.repr(pid)}")


def _finish(obj, depth=0):
    """The loaded object with array stubs replaced by their arrays; refuses any other type."""
    if depth > _MAX_DEPTH:
        _refuse("an object nested more than 32 deep")
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            _refuse("an array without data")
        return obj.array
    t = type(obj)
    if t in (str, bytes, int):
        return obj
    if t is list:
        return [_finish(v, depth + 1) for v in obj]
    if t is dict:
        out = {}
        for k, v in obj.items():
            if type(k) not in (str, bytes, int):
                _refuse(f"a dict key of type {type(k).__name__}")
            out[k] = _finish(v, depth + 1)
        return out
    _refuse(f"an object of type {t.__module__}.{t.__qualname__}")


def _load(f):
    try:
        return _finish(RestrictedUnpickler(f, encoding="latin1").load())
    except pickle.UnpicklingError:
        raise
    except RecursionError:
        raise pickle.UnpicklingError("malformed pickle: nested too deeply") from None
    except (EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeError,
            OverflowError, MemoryError, struct_error) as exc:
        # What a truncated or crafted stream makes the unpickler itself raise.
        raise pickle.UnpicklingError(f"malformed pickle ({type(exc).__name__}: {exc})") from None


def safe_loads(data: bytes):
    """``safe_load`` of bytes already in memory."""
    return _load(io.BytesIO(data))


def safe_load(path):
    """Load a pickle file with the restricted unpickler. ``latin1`` is what numpy
    documents for Python-2 pickles (the official CIFAR files): byte strings
    inside arrays round-trip exactly, and Python-3 bytes keys stay bytes."""
    with open(path, "rb") as f:
        return _load(f)
