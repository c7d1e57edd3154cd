"""What every `addernet` subcommand checks before its work starts, and how it says a mistake.

A user's mistake is one line on stderr naming the flag and the fix, with exit status 2, never a
traceback: ``UsageError`` carries that line up to ``addernet.cli.main``, and ``Parser`` turns
argparse's own errors (an unknown flag, ``--epochs x``) into the same one line.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile


class UsageError(Exception):
    """A user's mistake on the command line; the message names the flag and says the fix."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (the usage block is a ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    """A multi-line library message (``tried:\\n  path...``) folded onto one line."""
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def report(prog: str, err: BaseException) -> int:
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
    return 2


# argparse ``type=`` functions: argparse names the flag ("argument --epochs: ...") and exits 2.

def _at_least(value, text: str, bound, strict: bool, what: str):
    """``value`` (parsed from ``text``) if it is above ``bound`` (``strict``) or at least ``bound``."""
    if value < bound or (strict and value == bound):
        raise argparse.ArgumentTypeError(f"must be {what} {'above' if strict else 'of at least'} {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _at_least(_int(text), text, 1, False, "a whole number")


def nonneg_int(text: str) -> int:
    return _at_least(_int(text), text, 0, False, "a whole number")


def seed_int(text: str) -> int:
    value = nonneg_int(text)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"must be below 2**63, got {text}")
    return value


def positive_float(text: str) -> float:
    return _at_least(finite_float(text), text, 0, True, "a number")


def nonneg_float(text: str) -> float:
    return _at_least(finite_float(text), text, 0, False, "a number")


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


# Checks made before the work starts.

def check_device(spec: str | None, flag: str = "--device") -> None:
    """A device torch can run on here: cpu, cuda, cuda:N (N < the GPUs seen) or mps."""
    if spec is None:
        return
    import torch

    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise UsageError(f"{flag} {spec!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"{flag} {spec}: torch sees no CUDA device here; use {flag} cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise UsageError(f"{flag} {spec}: there {'is' if n == 1 else 'are'} {n} CUDA device{'s' * (n != 1)} "
                             f"(cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError(f"{flag} mps: torch sees no MPS device here; use {flag} cpu")
    elif dev.type != "cpu":
        raise UsageError(f"{flag} {spec}: not a device addernet trains on; use cpu, cuda or cuda:N")


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _can_write_in(folder: str) -> bool:
    # os.access says yes to root on a read-only mount; creating a file is the honest test.
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_out_dir(path: str, flag: str = "--out") -> None:
    """``path`` is a folder, or can be made one, and files can be written in it."""
    if not str(path).strip():
        raise UsageError(f"{flag} is empty; give a folder path")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file, not a folder; give a folder path")
    base = _existing_ancestor(path)
    if not os.path.isdir(base):
        raise UsageError(f"{flag} {path}: {base} is a file, so the folder cannot be made; give another path")
    if not _can_write_in(base):
        raise UsageError(f"{flag} {path}: cannot write in {base}; give a folder you can write to")


def check_out_file(path: str | None, flag: str) -> None:
    """``path`` can be written (its folders are made when it is)."""
    if path is None:
        return
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a folder; give a file path")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{flag} {path}: the file is not writable; give another path")
        folder = os.path.dirname(os.path.abspath(path))
    else:
        folder = _existing_ancestor(os.path.dirname(os.path.abspath(path)))
        if not os.path.isdir(folder):
            raise UsageError(f"{flag} {path}: {folder} is a file, so the folder cannot be made; give another path")
    if not _can_write_in(folder):
        raise UsageError(f"{flag} {path}: cannot write in {folder}; give a path you can write to")


def check_in_dir(path: str, flag: str) -> None:
    """``path`` is a folder this process can list and read."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist; give the folder that holds the data set")
    if not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file; give the folder that holds it")
    try:
        os.listdir(path)
    except OSError as e:
        raise UsageError(f"{flag} {path} cannot be read ({e.strerror}); check its permissions") from None


def check_in_file(path: str, flag: str) -> None:
    """``path`` is a regular file this process can read."""
    if not os.path.exists(path):
        raise UsageError(f"{flag} {path} does not exist")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {path} is not a file")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise UsageError(f"{flag} {path} cannot be read ({e.strerror}); check its permissions") from None


def unit_interval(text: str) -> float:
    """An argparse ``type=``: a number in (0, 1] (a fraction of an image, say)."""
    value = finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def write_text(path: str, text: str) -> None:
    """Write a result file, making its folders (checked beforehand by ``check_out_file``)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
