"""``python benchmarks/bench_ops.py``: the flags onto ``addernet.bench.op_table.run``.

    python benchmarks/bench_ops.py --sets resnet20 --threads 2 --json out.json

Every number printed is a ratio of medians measured interleaved in this process, with the thread
count fixed and stated. Absolute times are printed for reference only.
"""
from __future__ import annotations

import argparse

from ..bench.op_table import run
from ..bench.shapes import LAYER_SETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sets", default="resnet20:32,resnet20:128,resnet18:8,lenet5_bn:256",
                   help="layer sets, each NAME or NAME:BATCH, from: " + ",".join(LAYER_SETS))
    p.add_argument("--batch", type=int, default=None, help="override each set's batch size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", default=None,
                   help="comma-separated adder backends to time (default: the backend a call would use now)")
    p.add_argument("--modes", default="fwd,fwdbwd")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--max-seconds", type=float, default=20.0, help="per shape and mode")
    p.add_argument("--json", default=None)
    p.add_argument("--markdown", default=None, help="write the ratio table, with the targets, as markdown")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return 0 if run(p.parse_args(argv)) else 1
