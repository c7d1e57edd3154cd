"""``addernet train``: argument parsing onto ``TrainConfig``, and the run it starts."""
from __future__ import annotations

import argparse
import os
import sys

from .config import KIND_CHOICES, TrainConfig, recipe_help

_DESCRIPTION = """Train an AdderNet model, its CNN twin, or both, with the AdderNet paper's recipe.

Writes into --out: last.pt (every epoch, atomically), metrics.json/.csv, curves.png, summary.json/.md;
with --kind both, adder/ and conv/ subfolders plus compare.png and the side-by-side summary."""

_EPILOG = recipe_help() + """

multi-GPU (one process per GPU, rank 0 writes the files):
  python -m torch.distributed.run --standalone --nproc_per_node=8 -m addernet.cli train --distributed ...
--batch-size is per process; the learning rate is not rescaled."""


def add_train_parser(sub) -> argparse.ArgumentParser:
    from .model_factory import model_names

    p = sub.add_parser("train", help="train an AdderNet and/or its CNN twin (the paper's recipes)",
                       description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=model_names(), help="architecture (default: per --data, see below)")
    p.add_argument("--kind", choices=KIND_CHOICES, default="adder",
                   help="adder layers, the CNN twin, or both one after the other (default adder)")
    p.add_argument("--data", default="mnist5k",
                   help="mnist5k, digits (embedded), mnist, fashion-mnist, cifar10, cifar100, imagefolder "
                        "(default mnist5k)")
    p.add_argument("--data-root", help="folder holding the data set files (not needed for mnist5k, digits)")
    p.add_argument("--epochs", type=int, help="default: per --data")
    p.add_argument("--batch-size", type=int, help="per process; default: per --data")
    p.add_argument("--lr", type=float, help="base learning rate of the cosine schedule; default: per --data")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=float, default=5e-4, help="default 5e-4")
    p.add_argument("--eta", type=float, default=0.2,
                   help="adaptive learning-rate scaling of adder layers; 0 turns it off (default 0.2)")
    p.add_argument("--schedule", choices=("step", "epoch"), default="step",
                   help="cosine per optimiser step, or per epoch as the official code (default step)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run folder (default runs/<data>_<model>_<kind>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                   help="continue from --out's last.pt (or PATH); starts fresh if there is none")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default cuda if available, else cpu)")
    p.add_argument("--amp", nargs="?", const="auto", default=False, choices=("auto", "bf16", "fp16"),
                   help="autocast: bf16 (CPU, recent GPUs) or fp16 with loss scaling; adder layers stay float32")
    p.add_argument("--distributed", action="store_true", help="DDP across the processes torchrun starts")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    p.add_argument("--limit-batches", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stop-after", type=int, help=argparse.SUPPRESS)
    p.set_defaults(fn=run)
    return p


def config_from_args(args) -> TrainConfig:
    return TrainConfig(
        model=args.model, kind=args.kind, data=args.data, data_root=args.data_root, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        eta=args.eta if args.eta else None, seed=args.seed, out=args.out, resume=args.resume,
        device=args.device, amp=args.amp, distributed=args.distributed, num_workers=args.workers,
        progress=not args.no_progress, schedule=args.schedule, limit_batches=args.limit_batches,
        stop_after=args.stop_after,
    )


def run(args) -> int:
    from . import distributed
    from .config import resolve
    from .configured import compare
    from .fit import fit

    try:
        cfg = resolve(config_from_args(args))
    except ValueError as e:
        print(f"addernet train: error: {e}", file=sys.stderr)
        return 2
    try:
        if cfg.kind == "both":
            out = compare(cfg)
            if out["table"] is not None:
                print(f"\n{cfg.model} on {cfg.data}, {cfg.epochs} epochs:\n{out['table']}")
                print(f"summary: {os.path.join(cfg.out, 'summary.md')}")
        else:
            res = fit(cfg)
            if distributed.is_main() and res.history:
                from .summary import format_table

                print(f"\n{format_table([res.summary_row()])}\nrun folder: {res.out}")
    finally:
        distributed.cleanup()
    return 0

