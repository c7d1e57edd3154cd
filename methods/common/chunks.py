"""What the three methods' second-version runs (issue 27) share: chunks of one (kind, phase, seed).

A chunk is a JSON with ``phase`` ("tune" or "eval"), ``kind``, ``seed``, ``quick`` and ``cells``.
``finish_chunk`` stamps and writes it; ``check_chunks`` checks a set before ``choose``/``merge``;
``cli_phase`` is the ``--phase`` command line of every method (one kind and one seed a chunk; with
``--merge``, the tuning choice or the merged claims).
"""
from __future__ import annotations

import json
import os
import time
from typing import Optional, Sequence

import torch

from . import report
from .cli import UserError, read_merge, seeds_of

PHASES = ("tune", "eval")


def finish_chunk(result: dict, *, t_start: float, note: str, json_path: Optional[str], log) -> dict:
    """Add the run's seconds, thread count and (quick runs) the too-small note; log it; write the JSON."""
    result.update(note=note if result.get("quick") else None,
                  seconds=round(time.perf_counter() - t_start, 1), threads=torch.get_num_threads())
    if result.get("quick") and log:
        log(note)
    if json_path:
        report.write_json(json_path, result)
    return result


def check_chunks(chunks: Sequence[dict], phase: str) -> str:
    """The one kind of a set of chunks of ``phase``; a ValueError for an empty set, another phase or mixed kinds."""
    if not chunks or any(c.get("phase") != phase for c in chunks):
        raise ValueError(f"this step takes the {'tuning' if phase == 'tune' else 'evaluation'} phase's chunks")
    kinds = {c.get("kind") for c in chunks}
    if len(kinds) != 1:
        raise ValueError(f"chunks of one kind at a time, got {sorted(map(str, kinds))}")
    return kinds.pop()


def cli_phase(module, args, run) -> int:
    """``--phase`` of a method's command line. ``module``: its ``preregistered`` (``choose``, ``merge_chunks``,
    ``TUNING_SEEDS``, ``EVAL_SEEDS``); ``run(seed, choice)``: runs one chunk (``choice``: the tuning
    choice read from ``--choice`` in phase eval, else None)."""
    if args.merge:
        if not args.json:
            raise UserError("--merge needs --json for the combined result")
        parts = read_merge(args.merge)
        try:
            result = module.choose(parts) if args.phase == "tune" else module.merge_chunks(parts, out=args.out)
        except (KeyError, ValueError) as e:
            raise UserError(f"--merge: {e}") from None
        report.write_json(args.json, result)
        print(result.get("table") or {k: v for k, v in result.items() if k not in ("scores", "setting_scores")})
        return 0
    if args.kind not in ("conv", "adder"):
        raise UserError("--phase runs one kind a chunk: --kind conv or --kind adder")
    seeds = seeds_of(args.seeds) or ((module.TUNING_SEEDS[0],) if args.phase == "tune" else (module.EVAL_SEEDS[0],))
    if len(seeds) != 1:
        raise UserError("--phase runs one seed a chunk: --seeds S")
    choice = None
    if args.phase == "eval":
        if args.choice is None:
            raise UserError("--phase eval needs --choice (the JSON that --phase tune --merge wrote)")
        try:
            with open(args.choice) as f:
                choice = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"--choice {args.choice}: {e}") from None
    try:
        run(seeds[0], choice)
    except ValueError as e:     # a choice file that lacks what the chunk needs
        if "needs the" in str(e):
            raise UserError(f"--choice {args.choice}: {e}") from None
        raise
    return 0


def finish_merge(chunks: Sequence[dict], result: dict, *, cols: Sequence[str], note: str, claims: dict,
                 described: dict, out: Optional[str], png: str, title: str) -> dict:
    """Complete a merged result: the claims and the described differences (``paired_difference``
    results keyed by their labels), the markdown table of ``result["rows"]``, the quick note; with
    ``out``, the one summary PNG (claims in green/red, description in blue)."""
    quick = any(c.get("quick") for c in chunks)
    result.update(claims=claims, described=described, quick=quick, note=note if quick else None,
                  table=report.table_markdown(result["rows"], list(cols)))
    if out:
        from .stats import summary_figure
        os.makedirs(out, exist_ok=True)
        labels = {f"{name}: {c['a']} - {c['b']}": c for name, c in claims.items()}
        fig = summary_figure({**labels, **described}, title=title + (" [quick: too small]" if quick else ""),
                             claims=list(labels))
        report.save_figure(fig, os.path.join(out, png))
    return result
