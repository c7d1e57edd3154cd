"""What the methods' command lines (``python -m methods.<name>``) share: one error type, one set of
argument checks, one ``--seeds`` and one ``--merge`` reader.

A user's mistake is one line on stderr with exit status 2, never a traceback: raise ``UserError``
(it is ``addernet``'s ``UsageError``, so the two command lines say mistakes the same way) and let
``run_main`` print it; ``Parser`` says argparse's own errors (an unknown flag, ``--epochs x``) as
the same one line. The ``type=`` checks are ``addernet.cli.checks``'s.
"""
from __future__ import annotations

import argparse
import json
from typing import Callable

from addernet.cli.checks import (Parser, UsageError, check_device, check_in_dir, check_in_file, check_out_dir,
                                 check_out_file, finite_float, nonneg_float, nonneg_int, one_line, positive_float,
                                 positive_int, report, seed_int, unit_interval)

UserError = UsageError  # the methods' name for it; one class, so an addernet check's error is one too

SEEDS_HELP = "seeds, as a list: 0 1 2 (or 0,1,2)"


def seeds(text: str) -> list[int]:
    """An argparse ``type=`` for one ``--seeds`` token: a seed, or a comma list of seeds."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{SEEDS_HELP}; got {text!r}")
    try:
        return [seed_int(p) for p in parts]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{SEEDS_HELP}, each a whole number of at least 0; got {text!r}") from None


def add_seeds(p: argparse.ArgumentParser, default: str) -> None:
    """``--seeds 0 1 2``: the same list in every method (``seeds_of`` flattens it). ``default`` says
    what the method runs without it."""
    p.add_argument("--seeds", type=seeds, nargs="+", default=None, metavar="SEED",
                   help=f"{SEEDS_HELP}; default {default}")


def seeds_of(value) -> tuple[int, ...] | None:
    """The ``--seeds`` value as one tuple (None when the flag was not given); a seed given twice is
    a mistake, since it would count one run twice in the statistics."""
    if value is None:
        return None
    flat = tuple(s for token in value for s in token)
    twice = sorted({s for s in flat if flat.count(s) > 1})
    if twice:
        raise UserError(f"--seeds names {', '.join(map(str, twice))} twice; give each seed once")
    return flat


def add_merge(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--merge", nargs="+", metavar="JSON", default=None, help=help)


def read_merge(paths, keys=()) -> list[dict]:
    """The JSON results that ``--merge`` names, in order. A file that cannot be read, or that is not
    a result (a JSON object holding ``keys``: another method's JSON, a hand-edited one), is a
    UserError naming it, before the merge indexes into it."""
    parts = []
    for path in paths:
        try:
            with open(path) as f:
                part = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"--merge {path}: {e}") from None
        missing = [k for k in keys if k not in part] if isinstance(part, dict) else None
        if missing is None or missing:
            what = f"lacks {', '.join(missing)}" if missing else f"holds a JSON {type(part).__name__}"
            raise UserError(f"--merge {path} {what}; give the --json a run of this method wrote")
        parts.append(part)
    return parts


# The input files the methods' stages read, by flag.
IN_FILES = ("checkpoint", "features", "labels")


def check_run_flags(args, out_is_file: bool = False) -> None:
    """What every method checks before its work, on whichever of these flags its parser has:
    ``--device`` (one torch has here), ``--out`` (a folder that can be made and written; a file path
    with ``out_is_file``), ``--json`` (a writable file path, not a folder), ``--data-root`` (a
    readable folder), ``--checkpoint``/``--features``/``--labels`` (readable files), ``--crop-scale``
    (LO <= HI). Raises ``UserError`` naming the flag."""
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    out = getattr(args, "out", None)
    if out is not None:
        (check_out_file if out_is_file else check_out_dir)(out, "--out")
    if getattr(args, "json", None) is not None:
        check_out_file(args.json, "--json")
    if getattr(args, "data_root", None) is not None:
        check_in_dir(args.data_root, "--data-root")
    for name in IN_FILES:
        if getattr(args, name, None) is not None:
            check_in_file(getattr(args, name), f"--{name}")
    scale = getattr(args, "crop_scale", None)
    if scale is not None and scale[0] > scale[1]:
        raise UserError(f"--crop-scale {scale[0]} {scale[1]}: LO must not exceed HI")


def check_data(name: str, root) -> None:
    """Both splits of dataset ``name`` open from ``root`` (the CIFAR batches are there, an image
    folder's files are images), checked before any work: the miniatures build their loaders
    inside the run, where a missing file or a bad image was a traceback after training had begun.
    The embedded sets need no check."""
    if root is None:
        return
    from addernet.data import get_dataset

    for train in (True, False):
        try:
            get_dataset(name, root, train=train, augment=False)
        except (OSError, ValueError) as e:
            raise UserError(f"--data {name} --data-root {root}: {e}") from None


def load_torch_file(path: str, flag: str):
    """``torch.load(path, weights_only=True)``; a file that is not a torch file, or one holding objects
    a weights-only load refuses (a pickle that would run code), is a ``UserError`` naming the flag."""
    import pickle
    import zipfile

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{flag} {path}: refused by a weights-only load (not a torch file, or it holds "
                        f"objects that could run code)") from None
    except (RuntimeError, EOFError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as e:
        raise UserError(f"{flag} {path} is not a torch file ({type(e).__name__})") from None


def run_main(prog: str, fn: Callable[[], object], errors: tuple = ()) -> int:
    """``fn()``, with a ``UserError`` (and any of ``errors``) said as one line on stderr: exit 2.
    A return value that is an int is the exit status; anything else means 0."""
    try:
        rc = fn()
    except (UserError, *errors) as e:
        return report(prog, e if one_line(e) else type(e).__name__)
    return rc if isinstance(rc, int) else 0


__all__ = ["Parser", "SEEDS_HELP", "UserError", "add_merge", "add_seeds", "check_data", "check_run_flags",
           "finite_float", "load_torch_file", "nonneg_float", "nonneg_int", "positive_float", "positive_int", "read_merge",
           "report", "run_main", "seed_int", "seeds", "seeds_of", "unit_interval"]
