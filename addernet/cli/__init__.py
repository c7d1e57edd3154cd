"""The `addernet` command line: info, demo, train and bench.

The CLI layer: its modules parse arguments and call the libraries (``addernet.train``,
``addernet.bench``); no library module holds argparse. ``checks`` says a user's mistake as one
line with exit status 2, ``info``/``train``/``bench``/``op_bench`` are the subcommands.
"""
from __future__ import annotations

import sys

from ..data.imagefolder import BadImageError
from .checks import Parser, UsageError, positive_int, report


def _info(args) -> int:
    from .info import info_lines

    print("\n".join(info_lines()))
    return 0


def _op_check() -> float:
    """Largest difference of the default backend from the reference, forward and backward, float64."""
    import torch

    from .. import backends, functional

    torch.manual_seed(0)
    x = torch.randn(4, 6, 11, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    outs = {}
    for be in (backends.current(), backends.REFERENCE):
        y = functional.adder_conv2d(x, w, None, 2, 1, 1, 2, backend=be)
        outs[be] = (y, *torch.autograd.grad(y.square().sum(), (x, w)))
    a, b = outs.values()
    return max((p - q).abs().max().item() for p, q in zip(a, b))


# The demo's training job: LeNet-5-BN adder vs CNN on the embedded mnist5k, a few epochs.
# 10 epochs reach the plateau (~98% for both kinds, benchmarks/results/results_train.md) in about 35 s on
# 2 idle cores, and in 2-4 minutes when other jobs share them.
DEMO_EPOCHS = 10


def _demo(args) -> int:
    from .. import backends
    from .train import add_train_parser

    try:
        _check_demo(args)
    except UsageError as e:
        return report("addernet demo", e)
    be = backends.current()
    err = _op_check()
    print(f"backend {be}: forward and backward agree with the reference to {err:.1e} (float64)")
    if err > 1e-9:
        print("MISMATCH", file=sys.stderr)
        return 1
    p = Parser(prog="addernet")
    add_train_parser(p.add_subparsers(dest="command"))
    train = p.parse_args(["train", "--data", "mnist5k", "--model", "lenet5_bn", "--kind", "both",
                          "--epochs", str(args.epochs), "--out", args.out]
                         + ["--no-progress"] * args.no_progress + ["--overwrite"] * args.overwrite)
    return train.fn(train)


def _check_demo(args) -> None:
    """The demo's training run is refused for the same reasons as `addernet train`'s, said before the kernel check."""
    from .checks import check_out_dir
    from .train import existing_run

    check_out_dir(args.out)
    found = existing_run(args.out)
    if found and not args.overwrite:
        raise UsageError(f"--out {args.out} holds a run already ({found}): add --overwrite to replace it, "
                         "or give another --out")


def build_parser() -> Parser:
    """The `addernet` parser with every subcommand (tests walk it: every flag has help text)."""
    from .._version import __version__
    from .train import add_train_parser

    parser = Parser(prog="addernet", description="Multiplication-free adder networks for PyTorch.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{info,demo,train,bench}")
    info = "versions, backends built, CPU SIMD flags and build configuration"
    sub.add_parser("info", help=info, description=f"Print the {info}.").set_defaults(fn=_info)
    demo_help = "check the kernels, then train LeNet-5-BN adder vs CNN on mnist5k"
    demo = sub.add_parser("demo", help=demo_help, description=f"Check the kernels against the reference, then train "
                          f"LeNet-5-BN as an AdderNet and as a CNN on the embedded mnist5k ({DEMO_EPOCHS} epochs).")
    demo.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS,
                      help=f"epochs per model (default {DEMO_EPOCHS})")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    demo.add_argument("--no-progress", action="store_true",
                      help="no tqdm progress bars (they are off anyway when stderr is not a terminal)")
    demo.set_defaults(fn=_demo)
    add_train_parser(sub)
    from .bench import add_parser as add_bench_parser  # here: `addernet info` needs no bench imports

    add_bench_parser(sub)
    return parser


def _image_error(err: BadImageError) -> str:
    """The image's own message: a DataLoader worker re-raises it with its traceback as the text,
    whose last line is the original error."""
    text = str(err)
    if "Traceback" in text:
        text = [line for line in text.splitlines() if line.strip()][-1]
        text = text.split("BadImageError: ", 1)[-1]
    return f"{text} (the check before training reads headers only; the epochs finished so far are kept)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except UsageError as e:  # a check inside a subcommand that did not report it itself
        return report(f"addernet {args.command}", e)
    except BadImageError as e:  # a file whose header read well but whose body does not decode
        return report(f"addernet {args.command}", _image_error(e))
    except KeyboardInterrupt:  # the user's own Ctrl-C: no traceback; a run keeps its last epoch
        hint = "; --resume continues from the last finished epoch" if args.command == "train" else ""
        print(f"addernet {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
