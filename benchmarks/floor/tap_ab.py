"""The float32 adder forward's two taps (ADDERNET_CPU_TAP) on each ISA, against F.conv2d.

    python benchmarks/floor/tap_ab.py --clock thread --json benchmarks/results/floor/tap_ab_thread.json
    python benchmarks/floor/tap_ab.py --clock wall --threads 2 --json benchmarks/results/floor/tap_ab_wall.json
    python benchmarks/floor/tap_ab.py --merge run1.json run2.json run3.json   # a markdown table

For every layer of benchmarks/bench_ops.py's sets it times, interleaved in one process:
F.conv2d, and the native forward with each (ISA, tap) pair, the kernel choice switched through the
environment between calls (the op reads it on each call). It prints each one's ratio of medians to
F.conv2d. `--clock thread` is the calling thread's CPU time at 1 thread: on a machine shared with
other jobs it is far steadier than wall time (a descheduled OpenMP thread stalls oneDNN's barrier).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from addernet.bench.latency import time_interleaved
from addernet.bench.shapes import LAYER_SETS
from addernet.machine import cpu_flags


def _taps(isa: str) -> tuple[str, ...]:
    # The default, then (AVX-512 only: two widths) each width forced, then the exact tap.
    return ("identity", "identity256", "identity512", "exact") if isa == "avx512" else ("identity", "exact")


def _supported_isas() -> list[str]:
    return torch.ops.addernet._cpu_info().split("supported=")[1].split()[0].split(",")


def _candidates(shape, isas):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, shape.cin, shape.size, shape.size, generator=gen)
    w = torch.randn(shape.cout, shape.cin, shape.kernel, shape.kernel, generator=gen)
    args = ([shape.stride] * 2, [shape.padding] * 2, [1, 1], 1)

    def conv():
        with torch.no_grad():
            F.conv2d(x, w, None, shape.stride, shape.padding)

    out = {"conv": conv}
    for isa in isas:
        for tap in _taps(isa):
            def adder(isa=isa, tap=tap):
                os.environ["ADDERNET_CPU_ISA"], os.environ["ADDERNET_CPU_TAP"] = isa, tap
                with torch.no_grad():
                    torch.ops.addernet.adder_conv2d(x, w, *args)
            out[f"{isa}/{tap}"] = adder
    return out


def merge(paths: list[str]) -> str:
    """A markdown table of several runs: per layer and path, the median of the runs' ratios and
    their range."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    names = [k[:-len("_ratio")] for k in runs[0]["rows"][0] if k.endswith("_ratio")]
    meta = runs[0]["meta"]
    lines = [f"forward / F.conv2d, {meta['threads']} thread(s), clock={meta['clock']}, "
             f"median (min-max) of {len(runs)} runs; {meta['native']}", "",
             "| layer (batch) | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for i, row in enumerate(runs[0]["rows"]):
        cells = []
        for n in names:
            v = sorted(r["rows"][i][n + "_ratio"] for r in runs)
            cells.append(f"{statistics.median(v):.2f} ({v[0]:.2f}-{v[-1]:.2f})")
        lines.append(f"| {row['set']} {row['layer']} ({row['batch']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="resnet20:32,resnet20:128,resnet18:8,lenet5_bn:256")
    p.add_argument("--isas", default=None, help="comma-separated, default: every one this CPU runs")
    p.add_argument("--clock", choices=["thread", "wall"], default="thread")
    p.add_argument("--threads", type=int, default=2, help="with --clock wall (thread uses 1)")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--json")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="print a table of these runs instead")
    args = p.parse_args(argv)
    if args.merge:
        print(merge(args.merge), end="")
        return 0
    isas = args.isas.split(",") if args.isas else [i for i in _supported_isas() if i != "scalar"]
    bad = [i for i in isas if i not in _supported_isas()]
    if bad:
        print(f"tap_ab.py: ISA not supported here: {','.join(bad)}", file=sys.stderr)
        return 2
    unknown = [spec.partition(":")[0] for spec in args.sets.split(",") if spec.partition(":")[0] not in LAYER_SETS]
    if unknown:
        print(f"tap_ab.py: unknown layer set {unknown[0]!r}; choose from {', '.join(LAYER_SETS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(1 if args.clock == "thread" else args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    saved = {k: os.environ.get(k) for k in ("ADDERNET_CPU_ISA", "ADDERNET_CPU_TAP")}
    names = [f"{i}/{t}" for i in isas for t in _taps(i)]
    print(f"# forward / F.conv2d, float32, {torch.get_num_threads()} thread(s), clock={args.clock}, "
          f"interleaved medians; native: {torch.ops.addernet._cpu_info()}")
    print(f"{'set':<10} {'layer':<18} {'batch':>5} " + " ".join(f"{n:>16}" for n in names) + f" {'conv ms':>8}")
    rows = []
    try:
        for spec in args.sets.split(","):
            set_name, _, batch = spec.partition(":")
            for shape in LAYER_SETS[set_name](int(batch)) if batch else LAYER_SETS[set_name]():
                t = time_interleaved(_candidates(shape, isas), repeats=args.repeats,
                                     max_seconds=args.max_seconds, clock=clock)
                conv = t["conv"].median
                row = dict(set=set_name, layer=shape.name, batch=shape.batch, conv_s=conv,
                           **{f"{n}_ratio": t[n].median / conv for n in names},
                           **{f"{n}_spread": t[n].spread for n in names})
                rows.append(row)
                print(f"{set_name:<10} {shape.name:<18} {shape.batch:>5} "
                      + " ".join(f"{row[n + '_ratio']:>15.2f}x" for n in names) + f" {conv * 1e3:>8.2f}",
                      flush=True)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if args.json:
        meta = dict(torch=torch.__version__, python=platform.python_version(), cpu_flags=cpu_flags(),
                    threads=torch.get_num_threads(), clock=args.clock, native=torch.ops.addernet._cpu_info())
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
