"""Crash-safe checkpoints that load with ``weights_only=True`` and resume bit for bit.

A checkpoint holds only tensors and plain Python types: state_dicts, the epoch, the metrics
history, the config as a dict, and every RNG state (torch CPU and CUDA, numpy, python ``random``),
one per rank. The numpy and python states are turned into tensors and ints because the
weights-only unpickler refuses numpy arrays.

Integrity: ``save_checkpoint`` stores a SHA-256 of the content (every tensor's dtype, shape and
bytes, every other value's type and value, in the dict's order) under ``"sha256"``, and
``load_checkpoint`` recomputes it, so a file damaged after it was written is refused rather than
trained from. The hash is over the content, not the file's bytes, so a plain ``torch.load`` still
reads the dict. A dict without ``"sha256"`` (written before the hash, or by other code) loads
unverified: ``verified(ck)`` says which. ``save_run_checkpoint`` keeps the one before as
``previous.pt`` beside ``last.pt``.
"""
from __future__ import annotations

import errno
import hashlib
import io
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


HASH_KEY = "sha256"
LAST, PREVIOUS = "last.pt", "previous.pt"


def save_checkpoint(state: dict, path: str) -> None:
    """``torch.save`` ``state`` plus its content's SHA-256 to ``path`` atomically (see ``atomic_write``).
    A ``"sha256"`` already in ``state`` (a loaded checkpoint, edited) is replaced by the new content's."""
    atomic_write_bytes(path, _serialise(state))


def _serialise(state: dict) -> memoryview:
    # In memory first: torch.save into a file that fills up raises a RuntimeError from its zip
    # writer, while a plain write raises the OSError (ENOSPC, EIO) that callers can tell apart.
    body = {k: v for k, v in state.items() if k != HASH_KEY}
    body[HASH_KEY] = content_sha256(body)
    buf = io.BytesIO()
    torch.save(body, buf)
    return buf.getbuffer()


def save_run_checkpoint(state: dict, folder: str) -> str:
    """Write ``folder/last.pt``, keeping the checkpoint it replaces as ``folder/previous.pt``.

    The new file is written in full first (a full disk fails here and changes nothing); then
    ``last.pt`` is hard-linked to ``previous.pt`` and the new file renamed over ``last.pt``, so at
    every instant ``last.pt`` is a whole checkpoint. Returns the path of ``last.pt``."""
    last, prev = os.path.join(folder, LAST), os.path.join(folder, PREVIOUS)
    data = _serialise(state)

    def keep_previous(tmp: str) -> None:
        if os.path.exists(last):
            link = prev + ".tmp"
            if os.path.lexists(link):
                os.unlink(link)
            try:
                os.link(last, link)
                os.replace(link, prev)
            except OSError:  # no hard links here: a rename leaves last.pt missing for an instant
                os.replace(last, prev)

    return atomic_write(last, lambda f: f.write(data), before_replace=keep_previous)


def content_sha256(state) -> str:
    """SHA-256 of a checkpoint's content: tensors by dtype, shape and bytes; other values by type
    and value; containers in order. Equal after a save/load round trip."""
    h = hashlib.sha256()
    _feed(h, state)
    return h.hexdigest()


def _feed(h, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().to("cpu").contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"D{len(obj)}:".encode())
        for k, v in obj.items():
            _feed(h, k)
            _feed(h, v)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)}:".encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, bool) or obj is None:
        h.update(f"B{obj}".encode())
    elif isinstance(obj, int):
        h.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        h.update(f"F{obj.hex()};".encode())
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        h.update(f"S{len(data)}:".encode() + data)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(f"Y{len(obj)}:".encode() + bytes(obj))
    else:  # torch.dtype, torch.device, complex...: types whose repr is their value
        text = repr(obj)
        if " at 0x" in text:
            raise TypeError(f"a checkpoint cannot hold a {type(obj).__name__} (no stable value to hash)")
        h.update(f"R{type(obj).__name__}:{text};".encode())


def verified(ck: dict) -> bool:
    """True if ``ck`` came with a SHA-256 (``load_checkpoint`` has checked it); False for an older
    or foreign checkpoint whose content could not be verified."""
    return HASH_KEY in ck


def atomic_write(path, write, before_replace=None) -> str:
    """Call ``write(f)`` on a binary temp file in ``path``'s folder, fsync, then rename it over
    ``path``: a crash at any point leaves either the old file or the new one, never a torn one.
    The file gets the mode ``open`` would give it (the user's umask). ``before_replace(tmp)`` runs
    once the new file is whole, before the rename. Returns ``path``."""
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
        if before_replace is not None:
            before_replace(tmp)
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


class CheckpointWriteError(OSError):
    """A checkpoint or metrics file that could not be written (a full disk, an I/O error). What was
    written before is intact; the message says so and how to go on."""


# Write failures that are the machine's, not the program's: the run ends with one line.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.EFBIG, errno.ENOENT, errno.ENOTDIR})


def previous_hint(path: str) -> str:
    """What to say after refusing ``path``: whether the checkpoint before it is intact, and how to
    resume from it."""
    path = os.fspath(path)
    if os.path.basename(path) != LAST:
        return ""
    prev = os.path.join(os.path.dirname(path), PREVIOUS)
    if not os.path.isfile(prev):
        return "; no previous checkpoint is kept beside it"
    try:
        load_checkpoint(prev, hint=False)
    except CheckpointError:
        return f"; the previous checkpoint {prev} is damaged too"
    return (f"; the previous epoch's checkpoint {prev} is intact: resume from it with "
            f"--resume {prev} (or fit(..., resume={prev!r}))")


def load_checkpoint(path: str, map_location: Any = "cpu", hint: bool = True) -> dict:
    """The dict ``save_checkpoint`` wrote. A file that is not one (truncated by a full disk, corrupt,
    damaged so that its content no longer matches its SHA-256, or holding objects a weights-only
    load refuses) raises ``CheckpointError`` naming it, and (``hint``) saying whether the previous
    checkpoint beside a ``last.pt`` is intact. A dict without a hash loads unverified (``verified``)."""
    path = os.fspath(path)
    try:
        return _load(path, map_location)
    except CheckpointError as e:
        if not hint:
            raise
        raise CheckpointError(f"{e}{previous_hint(path)}") from e.__cause__


def _load(path: str, map_location) -> dict:
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} refused: it holds objects a weights-only load does not allow "
                              f"({reason[:200]})") from e
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, TypeError, AttributeError, OverflowError,
            zipfile.BadZipFile) as e:
        size = os.path.getsize(path)
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({size} bytes; "
                              f"{type(e).__name__}: {str(e).strip().split('. ')[0][:160] or 'no detail'})") from e
    if not isinstance(ck, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ck).__name__}, not a checkpoint dict")
    if HASH_KEY in ck:
        saved = ck[HASH_KEY]
        try:
            actual = content_sha256({k: v for k, v in ck.items() if k != HASH_KEY})
        except TypeError:
            actual = None
        if actual != saved:
            raise CheckpointError(f"checkpoint {path} is damaged: its content does not match the SHA-256 "
                                  f"it was saved with")
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

