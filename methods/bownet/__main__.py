"""python -m methods.bownet: the BoWNet miniature (or the same stages at scale, under torchrun).

    python -m methods.bownet --quick --json runs/bownet_quick.json
    python -m methods.bownet --seeds 0 1 2 --kind both --out runs/bownet
"""
from __future__ import annotations

import argparse
import os
import sys

from .experiment import STAGES, MiniConfig, quick_config, run


def parse_args(argv=None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    p = argparse.ArgumentParser(prog="python -m methods.bownet", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = MiniConfig()
    p.add_argument("--quick", action="store_true", help="a short run: 1 seed, 1000 images, 2 epochs a stage")
    p.add_argument("--json", default=None, help="where to write the JSON (default OUT/bownet.json)")
    p.add_argument("--out", default=d.out, help="folder for the JSON, table and PNG")
    p.add_argument("--data", default=d.data)
    p.add_argument("--data-root", default=None, help="folder holding the data set (not needed for mnist5k, digits)")
    p.add_argument("--kind", default="both", help="conv, adder or both")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
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
    p.add_argument("--inv-delta", type=float, default=d.inv_delta, help="soft assignment: inverse temperature "
                   "relative to the mean nearest-word distance (OBoW)")
    p.add_argument("--border", type=int, default=None,
                   help="feature-map border dropped before quantising (default per model: 0 for lenet5_bn, else 1)")
    p.add_argument("--crop-scale", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="g(x)'s random resized crop area range (default 0.8 1 on digits, else 0.5 1)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--episodes", type=int, default=None, help="few-shot episodes per evaluation")
    p.add_argument("--train-subset", type=int, default=None, help="pretext-train on this many images")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads (0: leave torch's default)")
    p.add_argument("--distributed", action="store_true",
                   help="train with DDP (launch with torchrun; default on when WORLD_SIZE > 1)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--phase", choices=("tune", "eval"), default=None,
                   help="one chunk of the second version (issue 27, pre-registered in methods/README.md): tune "
                        "(grid on the 5-9 validation images) or eval (test images); one --kind, one seed")
    p.add_argument("--choice", default=None, help="--phase eval: the tuning phase's choice JSON")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="with --phase: combine chunks (tune: the choice; eval: claims, table, PNG in --out)")
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
            kw[name] = tuple(value) if name == "seeds" else value
    return quick_config(**kw) if a.quick else MiniConfig(**kw)


def _v2(args, parser) -> int:
    import json

    from methods.common import report
    from . import preregistered as P

    def fail(msg):
        print(f"{parser.prog}: error: {msg}", file=sys.stderr)
        return 2

    def read(path):
        with open(path) as f:
            return json.load(f)
    try:
        if args.merge:
            if not args.json:
                return fail("--merge needs --json for the combined result")
            parts = [read(p) for p in args.merge]
            result = P.choose(parts) if args.phase == "tune" else P.merge(parts, out=args.out)
            report.write_json(args.json, result)
            print(result.get("table") or {k: result[k] for k in ("words", "crop", "layers")})
            return 0
        if args.kind not in ("conv", "adder"):
            return fail("--phase runs one kind a chunk: --kind conv or --kind adder")
        if args.seeds is not None and len(args.seeds) != 1:
            return fail("--phase runs one seed a chunk: --seeds S")
        seed = args.seeds[0] if args.seeds else (P.TUNING_SEEDS[0] if args.phase == "tune" else P.EVAL_SEEDS[0])
        choice = None
        if args.phase == "eval":
            if args.choice is None:
                return fail("--phase eval needs --choice (the JSON that --phase tune --merge wrote)")
            choice = read(args.choice)
        if args.threads:
            import torch
            torch.set_num_threads(args.threads)
            try:
                import faiss
                faiss.omp_set_num_threads(args.threads)
            except ImportError:
                pass
        P.run_chunk(args.kind, args.phase, seed, choice=choice, quick=args.quick, json_path=args.json, data=args.data)
    except (OSError, KeyError, ValueError) as e:
        return fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    return 0


def main(argv=None) -> int:
    args, parser = parse_args(argv)
    if args.phase is not None:
        return _v2(args, parser)
    try:
        cfg = config_from_args(args)
        from .experiment import validate
        validate(cfg)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    run(cfg)
    if args.quick:
        from methods.common.stats import QUICK_NOTE
        print(QUICK_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
