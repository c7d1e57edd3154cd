"""Crash-safe checkpoints that load with ``weights_only=True`` and resume bit for bit.

A checkpoint holds only tensors and plain Python types: state_dicts, the epoch, the metrics
history, the config as a dict, and every RNG state (torch CPU and CUDA, numpy, python ``random``),
one per rank. The numpy and python states are turned into tensors and ints because the
weights-only unpickler refuses numpy arrays.
"""
from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_write``)."""
    atomic_write(path, lambda f: f.write(data))


def save_checkpoint(state: dict, path: str) -> None:
    """``torch.save`` ``state`` to ``path`` atomically (see ``atomic_write_bytes``)."""
    atomic_write(path, lambda f: torch.save(state, f))


def atomic_write(path, write) -> str:
    """Call ``write(f)`` on a binary temp file in ``path``'s folder, fsync, then rename it over
    ``path``: a crash at any point leaves either the old file or the new one, never a torn one.
    The file gets the mode ``open`` would give it (the user's umask). Returns ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600, not the mode open() would have given
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(folder)
    return path


def _umask() -> int:
    # Read from /proc where it can be: setting and restoring it would race other threads' files.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable; some filesystems cannot open a directory, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, refused, or from another run. Names the file."""


def load_checkpoint(path: str, map_location: Any = "cpu") -> dict:
    """The dict ``save_checkpoint`` wrote. A file that is not one (truncated by a full disk, corrupt,
    or holding objects a weights-only load refuses) raises ``CheckpointError`` naming it."""
    path = os.fspath(path)
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} refused: it holds objects a weights-only load does not allow "
                              f"({reason[:200]})") from e
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, zipfile.BadZipFile) as e:
        size = os.path.getsize(path)
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({size} bytes; "
                              f"{type(e).__name__}: {str(e).strip().split('. ')[0][:160] or 'no detail'})") from e
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ck).__name__}, not a checkpoint dict")
    return ck


def rng_state() -> dict:
    """This process's RNG states as tensors and plain types."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(py_version), "internal": torch.tensor(py_internal, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

