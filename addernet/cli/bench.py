"""`addernet bench`: the flags onto ``addernet.bench.model_bench.bench_model``, and its files.

    addernet bench --model resnet20 --kind both --threads 2 --json r.json --markdown r.md --plot r.png
"""
from __future__ import annotations

import argparse
import os

import torch

from ..bench.cost_table import SHIPPED, CostTableError
from ..bench.cost_table import load_table as load_cost_table
from ..bench.energy import EnergyTableError, load_energy_table
from ..bench.model_bench import BATCH, BenchError, bench_model, check_backends
from ..models.registry import MODELS, canonical_name
from .checks import UsageError, check_out_file, nonneg_int, positive_float, positive_int, report, write_text

DESCRIPTION = """Count a model's multiplications, additions, absolute values and comparisons per image, layer by
layer, estimate their energy from a per-operation table, and time inference and a training step
(and each weight layer alone) for the CNN against its AdderNet twin on every adder backend.

Counts and energy need no timing (--no-latency). Timings are medians of interleaved runs in one
process with the thread count fixed; --json, --markdown and --plot save the results."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=_model_name, help="one of " + ", ".join(MODELS))
    p.add_argument("--kind", default="both", choices=["adder", "conv", "both"],
                   help="the CNN, its AdderNet twin, or both side by side (default both)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="for latency and memory (default: per "
                   "model, " + ", ".join(f"{k} {v}" for k, v in BATCH.items()) + ")")
    p.add_argument("--input", default=None, help="CxHxW (default: the model's dataset size)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to time (default cpu)")
    p.add_argument("--backends", default=None, help="adder backends to time, comma-separated "
                   "(default: those available on the device, reference only for small models)")
    p.add_argument("--dtype", default="float32", help="energy table column: float32, float16, int8, int32 "
                   "(latency is always measured in float32)")
    p.add_argument("--energy-table", default=None, help="JSON per-op energy table (default: Horowitz ISSCC 2014, 45 nm)")
    p.add_argument("--cost-table", action="append", default=[], metavar="NAME_OR_JSON",
                   help="another per-operation cost table to price the counts with, e.g. via_nano_2000 (cycles, "
                   "the AdderNet paper's CPU); repeatable; shipped: " + ", ".join(SHIPPED))
    p.add_argument("--fold-bn", action="store_true", help="count BatchNorm folded into the preceding layer")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="intra-op threads (default: torch's current setting)")
    p.add_argument("--repeats", type=positive_int, default=5,
                   help="timed rounds of each candidate, interleaved (default 5; per layer twice as many)")
    p.add_argument("--warmup", type=nonneg_int, default=1, help="untimed rounds before timing (default 1)")
    p.add_argument("--max-seconds", type=positive_float, default=30.0,
                   help="time budget per timed group (>= 3 rounds; default 30)")
    p.add_argument("--no-latency", action="store_true", help="counts and energy only")
    p.add_argument("--no-layer-latency", action="store_true", help="time the whole model only")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar over the layer timings (it is off anyway when stderr is not a terminal)")
    p.add_argument("--json", default=None, metavar="PATH", help="write the whole result as JSON")
    p.add_argument("--markdown", default=None, metavar="PATH", help="write the tables as Markdown")
    p.add_argument("--plot", default=None, metavar="PATH",
                   help="PNG: per-layer mults vs adds and adder/conv latency")


def _model_name(text: str) -> str:
    try:
        return canonical_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parse_input(s: str | None):
    if s is None:
        return None
    try:
        dims = tuple(int(v) for v in s.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 3 or min(dims) <= 0:
        raise BenchError(f"--input must look like 3x32x32, got {s!r}")
    return dims


def _check_args(args) -> None:
    """What the flags alone can show wrong, before any counting or timing; raises UsageError."""
    for flag in ("json", "markdown", "plot"):
        check_out_file(getattr(args, flag), f"--{flag}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here; use --device cpu")
    try:
        table = load_energy_table(args.energy_table)
    except EnergyTableError as exc:
        raise UsageError(f"--energy-table: {exc}") from None
    if args.dtype not in table.dtypes():
        raise UsageError(f"--dtype {args.dtype}: the energy table has no such column; "
                         f"choose one of {', '.join(table.dtypes())}")
    for name in args.cost_table:
        try:
            cost = load_cost_table(name)
        except CostTableError as exc:
            raise UsageError(f"--cost-table: {exc}") from None
        if args.dtype not in cost.dtypes():
            raise UsageError(f"--cost-table {name}: it has no {args.dtype!r} column (--dtype); "
                             f"it has {', '.join(cost.dtypes())}")
    if args.backends is not None:
        if args.kind == "conv":
            raise UsageError("--backends names adder backends, and --kind conv times none: drop one of them")
        try:
            check_backends(args.backends, args.device)
        except BenchError as exc:
            raise UsageError(f"--backends {args.backends}: {exc}") from None
    try:
        _parse_input(args.input)
    except BenchError as exc:
        raise UsageError(str(exc)) from None


def run(args) -> int:
    import json

    from ..bench import report as tables

    prog = "addernet bench"
    try:
        _check_args(args)
        result = bench_model(
            args.model, args.kind, args.batch_size, args.device, args.backends, args.dtype, args.energy_table,
            args.threads, not args.no_latency, args.fold_bn, args.repeats, args.warmup, args.max_seconds,
            not args.no_layer_latency, _parse_input(args.input), progress=not args.no_progress,
            cost_tables=tuple(args.cost_table))
    except (UsageError, BenchError, CostTableError) as exc:
        return report(prog, exc)
    print(tables.console(result))
    written = []
    if args.json:
        write_text(args.json, json.dumps(result, indent=1))
        written.append(args.json)
    if args.markdown:
        write_text(args.markdown, tables.markdown(result))
        written.append(args.markdown)
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        tables.plot(result, args.plot)
        written.append(args.plot)
    if written:
        print("wrote:\n" + "\n".join(f"  {f}" for f in written))
    return 0


def add_parser(sub) -> None:
    """Adds the `bench` subcommand to the `addernet` command line's subparsers."""
    p = sub.add_parser("bench", help="a model's mults, adds, energy, latency and memory: CNN vs AdderNet",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(fn=run)
