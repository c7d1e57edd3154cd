"""Adder op per backend against F.conv2d at the paper's layer shapes; see addernet/bench/op_table.py
(the flags: addernet/cli/op_bench.py).

    python benchmarks/bench_ops.py --sets resnet20,resnet18,lenet5_bn --threads 2 --json bench_ops.json
"""
import sys

from addernet.cli.op_bench import main

if __name__ == "__main__":
    sys.exit(main())
