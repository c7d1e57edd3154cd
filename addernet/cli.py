"""The `addernet` command line: info, demo, and (as they land) train and bench."""
from __future__ import annotations

import argparse
import sys


def _info(args) -> int:
    from .cli_info import info_lines

    print("\n".join(info_lines()))
    return 0


def _op_check() -> float:
    """Largest difference of the default backend from the reference, forward and backward, float64."""
    import torch

    from . import backends, functional

    torch.manual_seed(0)
    x = torch.randn(4, 6, 11, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    outs = {}
    for be in (backends.current(), "reference"):
        y = functional.adder_conv2d(x, w, None, 2, 1, 1, 2, backend=be)
        outs[be] = (y, *torch.autograd.grad(y.square().sum(), (x, w)))
    a, b = outs.values()
    return max((p - q).abs().max().item() for p, q in zip(a, b))


def _demo(args) -> int:
    from . import backends
    from .bench import op_table

    be = backends.current()
    err = _op_check()
    print(f"backend {be}: forward and backward agree with the reference to {err:.1e} (float64)")
    if err > 1e-9:
        print("MISMATCH", file=sys.stderr)
        return 1
    p = argparse.ArgumentParser()
    op_table.add_arguments(p)
    op_table.run(p.parse_args(["--sets", "resnet20", "--backends", be, "--repeats", "5"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="addernet", description="Multiplication-free adder networks for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends built, CPU SIMD flags and build configuration").set_defaults(
        fn=_info)
    sub.add_parser("demo", help="check the kernels and time them against F.conv2d").set_defaults(fn=_demo)
    from .bench.model_bench import add_parser as add_bench_parser  # here: `addernet info` needs no bench imports

    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
