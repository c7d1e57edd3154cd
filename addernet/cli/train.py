"""``addernet train``: argument parsing onto ``TrainConfig``, and the run it starts."""
from __future__ import annotations

import argparse
import dataclasses
import os

from .checks import (UsageError, check_device, check_in_dir, check_out_dir, nonneg_float, nonneg_int,
                     positive_float, positive_int, report, seed_int)
from ..train.config import KIND_CHOICES, TrainConfig, recipe_help
from ..train.optim import SCHEDULES

_DESCRIPTION = """Train an AdderNet model, its CNN twin, or both, with the AdderNet paper's recipe.

Writes into --out: last.pt (every epoch, atomically), metrics.json/.csv, curves.png, summary.json/.md;
with --kind both, adder/ and conv/ subfolders plus compare.png and the side-by-side summary."""

_EPILOG = recipe_help() + """

multi-GPU (one process per GPU, rank 0 writes the files):
  python -m torch.distributed.run --standalone --nproc_per_node=8 -m addernet.cli train --distributed ...
--batch-size is per process; the learning rate is not rescaled."""


def add_train_parser(sub) -> argparse.ArgumentParser:
    from ..train.model_factory import model_names

    p = sub.add_parser("train", help="train an AdderNet and/or its CNN twin (the paper's recipes)",
                       description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=model_names(), help="architecture (default: per --data, see below)")
    p.add_argument("--kind", choices=KIND_CHOICES, default="adder",
                   help="adder layers, the CNN twin, or both one after the other (default adder)")
    p.add_argument("--data", default="mnist5k", type=_data_name,
                   help="mnist5k, digits (embedded), mnist, fashion-mnist, cifar10, cifar100, imagefolder "
                        "(default mnist5k)")
    p.add_argument("--data-root", help="folder holding the data set files (not needed for mnist5k, digits)")
    p.add_argument("--epochs", type=positive_int, help="default: per --data")
    p.add_argument("--batch-size", type=positive_int, help="per process; default: per --data")
    p.add_argument("--lr", type=positive_float,
                   help="base learning rate of the schedule; default: per --data")
    p.add_argument("--momentum", type=nonneg_float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=nonneg_float, default=5e-4, help="SGD weight decay (default 5e-4)")
    p.add_argument("--eta", type=nonneg_float, default=0.2,
                   help="adaptive learning-rate scaling of adder layers; 0 turns it off (default 0.2)")
    p.add_argument("--schedule", choices=tuple(SCHEDULES), default="step",
                   help="; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()))
    p.add_argument("--seed", type=seed_int, default=0,
                   help="seeds the weights, the data order and augmentation (default 0)")
    p.add_argument("--out", help="run folder (default runs/<data>_<model>_<kind>)")
    p.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                   help="continue from --out's last.pt (or PATH); starts fresh if there is none")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, such an --out is refused)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default cuda if available, else cpu)")
    p.add_argument("--amp", nargs="?", const="auto", default=False, choices=("auto", "bf16", "fp16"),
                   help="autocast: bf16 (CPU, recent GPUs) or fp16 with loss scaling (CUDA); "
                        "adder layers stay float32")
    p.add_argument("--distributed", action="store_true", help="DDP across the processes torchrun starts")
    p.add_argument("--workers", type=nonneg_int, default=0, help="DataLoader worker processes (default 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="no tqdm progress bars (they are off anyway when stderr is not a terminal)")
    p.add_argument("--limit-batches", type=positive_int, metavar="N",
                   help="at most N batches per epoch, train and test: a quick smoke run")
    p.add_argument("--stop-after", type=positive_int, metavar="N",
                   help="stop after N epochs with the schedule still planned for --epochs "
                        "(an interruption, to try --resume)")
    p.set_defaults(fn=run)
    return p


def _data_name(text: str) -> str:
    from ..data.registry import dataset_name

    try:
        return dataset_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def config_from_args(args) -> TrainConfig:
    return TrainConfig(
        model=args.model, kind=args.kind, data=args.data, data_root=args.data_root, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        eta=args.eta if args.eta else None, seed=args.seed, out=args.out, resume=args.resume,
        device=args.device, amp=args.amp, distributed=args.distributed, num_workers=args.workers,
        progress=not args.no_progress, schedule=args.schedule, limit_batches=args.limit_batches,
        stop_after=args.stop_after,
    )


# What a run leaves in its folder (and in adder/, conv/ with --kind both): what marks a folder as
# holding a run, and the only files --overwrite removes.
RUN_FILES = ("last.pt", "previous.pt", "metrics.json", "metrics.csv", "curves.png", "summary.json", "summary.md",
             "compare.png")
_RUN_MARKERS = ("last.pt", "metrics.json", "summary.json")


def existing_run(out: str) -> str | None:
    """The first file that shows ``out`` holds a run, or None."""
    for sub in ("", "adder", "conv"):
        for name in _RUN_MARKERS:
            path = os.path.join(out, sub, name)
            if os.path.isfile(path):
                return path
    return None


def check_run_args(cfg: TrainConfig, overwrite: bool = False) -> None:
    """Everything about a resolved config that can be known wrong before any work; raises UsageError."""
    import torch

    from ..train.amp import amp_dtype
    from ..train.runtime import pick_device

    check_device(cfg.device)
    if cfg.amp:
        device_type = pick_device(cfg.device).type
        try:
            dtype = amp_dtype(cfg.amp, device_type)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if dtype == torch.bfloat16 and device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UsageError(f"--amp {cfg.amp}: this GPU has no bfloat16; use --amp fp16 (loss-scaled float16)")
    if cfg.distributed and ("RANK" not in os.environ or "WORLD_SIZE" not in os.environ):
        raise UsageError("--distributed needs the processes torchrun starts: python -m torch.distributed.run "
                         "--nproc_per_node=N -m addernet.cli train --distributed ...")
    if cfg.data_root is not None:  # even where the data is embedded: a wrong path is a mistake to say
        check_in_dir(cfg.data_root, "--data-root")
    if cfg.data not in ("mnist5k", "digits"):
        if cfg.data_root is None:
            raise UsageError(f"--data {cfg.data} is read from local files and never downloaded: "
                             f"add --data-root <folder holding it>")
        check_in_dir(cfg.data_root, "--data-root")
    check_out_dir(cfg.out)
    if cfg.resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if isinstance(cfg.resume, str):
        if not os.path.exists(cfg.resume):
            raise UsageError(f"--resume {cfg.resume}: no such checkpoint or run folder")
        if cfg.kind == "both" and not os.path.isdir(cfg.resume):
            raise UsageError("--resume with --kind both takes the run folder (holding adder/ and conv/), "
                             "not one checkpoint file")
    found = existing_run(cfg.out)
    if found and not cfg.resume and not overwrite:
        raise UsageError(f"--out {cfg.out} holds a run already ({found}): add --resume to continue it, "
                         f"--overwrite to replace it, or give another --out")


def _loaders(cfg: TrainConfig):
    """The data, read before training starts so that a bad --data-root is said at once."""
    from ..data import make_loaders

    try:
        return make_loaders(cfg.data, cfg.data_root, cfg.batch_size, cfg.num_workers, seed=cfg.seed)
    except (OSError, ValueError, ImportError) as e:
        where = f" --data-root {cfg.data_root}" if cfg.data_root else ""
        raise UsageError(f"--data {cfg.data}{where}: {e}") from None


def run(args) -> int:
    from ..train import distributed
    from ..train.checkpoint import WRITE_ERRNOS, CheckpointError, CheckpointWriteError
    from ..train.config import resolve
    from ..train.configured import compare, fit_config
    from ..train.staging import discard, stage_folder, swap_in

    prog = "addernet train"
    stage = None
    try:
        cfg = resolve(config_from_args(args))
        check_run_args(cfg, args.overwrite)
        # Under torchrun the loaders need the process group; fit builds them after joining it.
        kw = {} if cfg.distributed else {"loaders": _loaders(cfg)}
        if kw:
            from ..train.preflight import check_config_run

            check_config_run(cfg, kw["loaders"])
        final, stage = cfg.out, None
        if args.overwrite and existing_run(cfg.out):
            # The new run goes beside the old one and is swapped in when it is complete (staging.py).
            stage = stage_folder(cfg.out, clear=distributed.is_main())
            cfg = dataclasses.replace(cfg, out=stage)
            stage = stage if distributed.is_main() else None  # rank 0 swaps, as it writes
    except (UsageError, ValueError) as e:
        return report(prog, e)
    try:
        if cfg.kind == "both":
            out = compare(cfg, **kw)
            files = out["files"]
            if out["table"] is not None:
                print(f"\n{cfg.model} on {cfg.data}, {cfg.epochs} epochs:\n{out['table']}")
        else:
            res = fit_config(cfg, **kw)
            files = res.files
            if distributed.is_main() and res.history:
                from ..train.summary import format_table

                print(f"\n{format_table([res.summary_row()])}")
        if stage is not None:
            swap_in(stage, final, RUN_FILES)
            files = [os.path.join(final, os.path.relpath(f, stage)) for f in files]
            stage = None
        if distributed.is_main() and files:
            print("wrote:\n" + "\n".join(f"  {f}" for f in files))
    except CheckpointError as e:
        return report(prog, f"{e}; use another --out, or --overwrite to start again")
    except FloatingPointError as e:
        return report(prog, f"{e} (--lr)")
    except OSError as e:  # a full disk or an I/O error while writing: the machine's, so exit 1
        if e.errno not in WRITE_ERRNOS:
            raise
        report(prog, e if isinstance(e, CheckpointWriteError) else f"could not write {e.filename}: {e.strerror}")
        return 1
    finally:
        if stage is not None:  # interrupted or failed: the run in --out was never touched
            discard(stage)
        distributed.cleanup()
    return 0
