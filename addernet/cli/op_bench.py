"""``python benchmarks/bench_ops.py``: the flags onto ``addernet.bench.op_table.run``.

    python benchmarks/bench_ops.py --sets resnet20 --threads 2 --json out.json

Every number printed is a ratio of medians measured interleaved in this process, with the thread
count fixed and stated. Absolute times are printed for reference only.
"""
from __future__ import annotations

import argparse
import os

from ..bench.model_bench import BenchError, check_backends
from ..bench.op_table import run
from ..bench.shapes import LAYER_SETS
from .checks import Parser, UsageError, check_out_file, positive_float, positive_int, report

MODES = ("fwd", "fwdbwd")
PROG = "bench_ops.py"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sets", default="resnet20:32,resnet20:128,resnet18:8,lenet5_bn:256",
                   help="layer sets, each NAME or NAME:BATCH, from: " + ",".join(LAYER_SETS))
    p.add_argument("--batch", type=positive_int, default=None, help="override each set's batch size")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--backends", default=None,
                   help="comma-separated adder backends to time (default: the backend a call would use now)")
    p.add_argument("--modes", default="fwd,fwdbwd", help="comma-separated, from: " + ",".join(MODES))
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--repeats", type=positive_int, default=7)
    p.add_argument("--max-seconds", type=positive_float, default=20.0, help="per shape and mode")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="write the ratio table, with the targets, as markdown")


def _check_args(args) -> None:
    """What the flags alone can show wrong, before the first timing (a bad set or mode surfaced
    after the sets before it had run; a bad --json after all of them); raises UsageError."""
    for spec in args.sets.split(","):
        name, colon, batch = spec.partition(":")
        if name not in LAYER_SETS:
            raise UsageError(f"--sets: unknown layer set {name!r}; choose from {', '.join(LAYER_SETS)}")
        if colon and not (batch.isdigit() and int(batch) >= 1):
            raise UsageError(f"--sets {spec}: the batch after ':' must be a whole number of at least 1")
    bad = [m for m in args.modes.split(",") if m not in MODES]
    if bad or not args.modes:
        raise UsageError(f"--modes {args.modes}: choose from {', '.join(MODES)}, comma-separated")
    if args.backends is not None:
        try:
            check_backends(args.backends, "cpu")
        except BenchError as exc:
            raise UsageError(f"--backends {args.backends}: {exc}") from None
    for flag in ("json", "markdown"):
        check_out_file(getattr(args, flag), f"--{flag}")


def main(argv=None) -> int:
    p = Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        _check_args(args)
    except UsageError as exc:
        return report(PROG, exc)
    for path in (args.json, args.markdown):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    return 0 if run(args) else 1
