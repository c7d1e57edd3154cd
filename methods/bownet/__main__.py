"""python -m methods.bownet: the BoWNet miniature (or the same stages at scale, under torchrun).

    python -m methods.bownet --quick --json runs/bownet_quick.json
    python -m methods.bownet --seeds 0 1 2 --kind both --out runs/bownet
"""
from __future__ import annotations

import argparse
import os
import sys

from methods.common.cli import (Parser, UserError, add_merge, add_seeds, check_data, check_run_flags, nonneg_int,
                                positive_float, positive_int, report, seeds_of, unit_interval)

from .experiment import STAGES, MiniConfig, quick_config, run

PROG = "python -m methods.bownet"


def parse_args(argv=None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    p = Parser(prog=PROG, description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = MiniConfig()
    p.add_argument("--quick", action="store_true", help="a short run: 1 seed, 1000 images, 2 epochs a stage")
    p.add_argument("--json", default=None, help="where to write the JSON (default OUT/bownet.json)")
    p.add_argument("--out", default=d.out, help="folder for the JSON, table and PNG")
    p.add_argument("--data", default=d.data)
    p.add_argument("--data-root", default=None, help="folder holding the data set (not needed for mnist5k, digits)")
    p.add_argument("--kind", default="both", help="conv, adder or both")
    add_seeds(p, "0 1 2 (0 with --quick)")
    p.add_argument("--stages", nargs="+", default=list(STAGES), help="a subset of " + " ".join(STAGES))
    p.add_argument("--model", default=d.model)
    p.add_argument("--layer", default=None, help="teacher layer for the vocabulary (default per model)")
    p.add_argument("--rotnet-epochs", type=int, default=None)
    p.add_argument("--bownet-epochs", type=int, default=None)
    p.add_argument("--rot-mode", choices=("all", "random"), default=d.rot_mode,
                   help="all: each image in all 4 rotations; random: one random rotation per image")
    p.add_argument("--words", type=int, default=None, help=f"vocabulary size K (default {d.num_words})")
    p.add_argument("--max-vectors", type=int, default=None, help="feature vectors sampled for k-means")
    p.add_argument("--assign", choices=("hard", "soft"), default=d.assign)
    p.add_argument("--pool", choices=("max", "avg"), default=d.pool)
    p.add_argument("--binary", action="store_true", help="bags of word presence (0/1) instead of pooled codes")
    p.add_argument("--inv-delta", type=positive_float, default=d.inv_delta, help="soft assignment: inverse temperature "
                   "relative to the mean nearest-word distance (OBoW)")
    p.add_argument("--border", type=int, default=None,
                   help="feature-map border dropped before quantising (default per model: 0 for lenet5_bn, else 1)")
    p.add_argument("--crop-scale", type=unit_interval, nargs=2, default=None, metavar=("LO", "HI"),
                   help="g(x)'s random resized crop area range (default 0.8 1 on digits, else 0.5 1)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--episodes", type=int, default=None, help="few-shot episodes per evaluation")
    p.add_argument("--train-subset", type=positive_int, default=None, help="pretext-train on this many images")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=nonneg_int, default=d.threads, help="torch CPU threads (0: leave torch's default)")
    p.add_argument("--distributed", action="store_true",
                   help="train with DDP (launch with torchrun; default on when WORLD_SIZE > 1)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--phase", choices=("tune", "eval"), default=None,
                   help="one chunk of the second version (issue 27, pre-registered in methods/README.md): tune "
                        "(grid on the 5-9 validation images) or eval (test images); one --kind, one seed")
    p.add_argument("--choice", default=None, help="--phase eval: the tuning phase's choice JSON")
    add_merge(p, "with --phase: combine chunks (tune: the choice; eval: claims, table, PNG in --out)")
    return p.parse_args(argv), p


def config_from_args(a: argparse.Namespace) -> MiniConfig:
    kinds = ("conv", "adder") if a.kind == "both" else (a.kind,)
    kw = dict(data=a.data, data_root=a.data_root, model=a.model, layer=a.layer, kinds=kinds,
              stages=tuple(a.stages), rot_mode=a.rot_mode, assign=a.assign, pool=a.pool, binary=a.binary,
              inv_delta=a.inv_delta, border=a.border, batch_size=a.batch_size, lr=a.lr, device=a.device,
              threads=a.threads or None, progress=not a.no_progress and sys.stderr.isatty(), out=a.out,
              json=a.json, crop_scale=tuple(a.crop_scale) if a.crop_scale else None,
              distributed=a.distributed or int(os.environ.get("WORLD_SIZE", "1")) > 1)
    for name, attr in (("seeds", "seeds"), ("rotnet_epochs", "rotnet_epochs"), ("bownet_epochs", "bownet_epochs"),
                       ("num_words", "words"), ("max_vectors", "max_vectors"), ("episodes", "episodes"),
                       ("train_subset", "train_subset")):
        value = getattr(a, attr)
        if value is not None:
            kw[name] = seeds_of(value) if name == "seeds" else value
    return quick_config(**kw) if a.quick else MiniConfig(**kw)


def _v2(args) -> int:
    """The second version's chunks (methods/README.md, "Second version"): one (kind, phase, seed) a call."""
    from methods.common.chunks import cli_phase
    from . import preregistered as P
    if args.data not in P.SETUPS:
        raise UserError(f"--phase runs on {' or '.join(P.SETUPS)}, got --data {args.data!r}")
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
        try:
            import faiss
            faiss.omp_set_num_threads(args.threads)
        except ImportError:
            pass
    return cli_phase(P, args, lambda seed, choice: P.run_chunk(
        args.kind, args.phase, seed, choice=choice, quick=args.quick, json_path=args.json, data=args.data))


def main(argv=None) -> int:
    args, _ = parse_args(argv)
    if args.phase is not None:
        try:
            return _v2(args)
        except UserError as e:
            return report(PROG, e)
    try:
        from .experiment import validate_config

        check_run_flags(args)
        cfg = config_from_args(args)
        validate_config(cfg)
        check_data(cfg.data, cfg.data_root)
    except (UserError, ValueError, FileNotFoundError, TypeError) as e:
        return report(PROG, e)
    run(cfg)  # past the checks, an error is a bug: it keeps its traceback
    if args.quick:
        from methods.common.stats import QUICK_NOTE
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
