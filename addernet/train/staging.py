"""Replacing a run without losing it first: the new run is written into a hidden folder beside the
old one and swapped in, file by file, only once it is complete. An interrupt or a failure before
then leaves the old run exactly as it was (``addernet train --overwrite``, ``make demo``)."""
from __future__ import annotations

import os
import shutil


def stage_folder(out: str, clear: bool = True) -> str:
    """The hidden sibling a replacement of ``out`` is written into; ``clear`` empties it first (what
    is there is an earlier replacement that never finished; only rank 0 clears)."""
    out = os.path.normpath(out)
    stage = os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.addernet-new")
    if clear:
        shutil.rmtree(stage, ignore_errors=True)
    return stage


def swap_in(stage: str, out: str, run_files) -> list[str]:
    """Move every file of ``stage`` to the same place under ``out`` (each an atomic rename), remove
    the old run's files (names in ``run_files``, in ``out`` and its ``adder``/``conv``) that the new
    run did not write, and remove ``stage``. Other files in ``out`` stay. Returns the moved paths."""
    moved = []
    for dirpath, _, files in os.walk(stage):
        rel = os.path.relpath(dirpath, stage)
        target = os.path.normpath(os.path.join(out, rel))
        os.makedirs(target, exist_ok=True)
        for name in sorted(files):
            os.replace(os.path.join(dirpath, name), os.path.join(target, name))
            moved.append(os.path.join(target, name))
    fresh = set(moved)
    for sub in ("", "adder", "conv"):
        for name in run_files:
            path = os.path.normpath(os.path.join(out, sub, name))
            if path not in fresh and os.path.isfile(path):
                os.remove(path)
    shutil.rmtree(stage, ignore_errors=True)
    return moved


def discard(stage: str) -> None:
    """Drop an unfinished replacement (the old run was never touched)."""
    shutil.rmtree(stage, ignore_errors=True)
