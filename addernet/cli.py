"""The `addernet` command line: info, demo, train and bench."""
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


# The demo's training job: LeNet-5-BN adder vs CNN on the embedded mnist5k, a few epochs.
# 10 epochs reach the plateau (~98% for both kinds, benchmarks/results_train.md) in about 35 s on
# 2 idle cores, and in 2-4 minutes when other jobs share them.
DEMO_EPOCHS = 10


def _demo(args) -> int:
    from . import backends
    from .train.cli import add_train_parser

    be = backends.current()
    err = _op_check()
    print(f"backend {be}: forward and backward agree with the reference to {err:.1e} (float64)")
    if err > 1e-9:
        print("MISMATCH", file=sys.stderr)
        return 1
    p = argparse.ArgumentParser(prog="addernet")
    add_train_parser(p.add_subparsers(dest="command"))
    train = p.parse_args(["train", "--data", "mnist5k", "--model", "lenet5_bn", "--kind", "both",
                          "--epochs", str(args.epochs), "--out", args.out])
    return train.fn(train)


def main(argv: list[str] | None = None) -> int:
    from .train.cli import add_train_parser

    from ._version import __version__

    parser = argparse.ArgumentParser(prog="addernet", description="Multiplication-free adder networks for PyTorch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, backends built, CPU SIMD flags and build configuration").set_defaults(
        fn=_info)
    demo = sub.add_parser("demo", help="check the kernels, then train LeNet-5-BN adder vs CNN on mnist5k")
    demo.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help=f"default {DEMO_EPOCHS}")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.set_defaults(fn=_demo)
    add_train_parser(sub)
    from .bench.model_bench import add_parser as add_bench_parser  # here: `addernet info` needs no bench imports

    add_bench_parser(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
