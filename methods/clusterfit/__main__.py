"""``python -m methods.clusterfit``: the miniature experiment, or one pipeline stage.

    python -m methods.clusterfit --quick --json out.json           # the miniature (mnist5k, CPU)
    python -m methods.clusterfit pretrain  --data cifar10 --data-root D --model resnet20 --out runs/pre
    python -m methods.clusterfit features  --checkpoint runs/pre/model.pt --data cifar10 --data-root D --out f.pt
    python -m methods.clusterfit cluster   --features f.pt --k 500 --out labels.pt
    python -m methods.clusterfit fit       --labels labels.pt --data cifar10 --data-root D --model resnet20 --out runs/cf
    python -m methods.clusterfit probe     --checkpoint runs/cf/model.pt --data cifar10 --data-root D

Every stage runs under ``torchrun`` with ``--distributed`` (DDP for pretrain/fit, sharded
extraction for features/probe). User mistakes print one line on stderr and exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from methods.common.cli import (Parser, UserError, add_merge, add_seeds, check_data, check_run_flags, load_torch_file,
                                nonneg_float, nonneg_int, positive_float, positive_int, read_merge, run_main, seed_int,
                                seeds_of, unit_interval)

STAGES = ("pretrain", "features", "cluster", "fit", "probe", "run")


def _common(p: argparse.ArgumentParser, data: bool = True):
    if data:
        p.add_argument("--data", default="mnist5k", help="dataset name (see addernet.data.DATASETS); default mnist5k")
        p.add_argument("--data-root", default=None, help="directory holding the data (CIFAR-10, ImageFolder, ...)")
        p.add_argument("--batch-size", type=positive_int, default=256)
        p.add_argument("--workers", type=nonneg_int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when present)")
    p.add_argument("--distributed", action="store_true", help="join the torchrun process group (DDP)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--no-progress", action="store_true")


def _train_args(p: argparse.ArgumentParser):
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--lr", type=positive_float, default=0.1)
    p.add_argument("--limit-batches", type=positive_int, default=None, help="at most this many batches per epoch")


def _model_args(p: argparse.ArgumentParser):
    p.add_argument("--model", default="lenet5_bn", help="lenet5_bn, resnet20, resnet18, tinynet, ...")
    p.add_argument("--kind", default="conv", choices=("conv", "adder"))


def build_parser() -> argparse.ArgumentParser:
    ap = Parser(prog="python -m methods.clusterfit", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="stage", metavar="STAGE")

    run = sub.add_parser("run", help="the miniature experiment (the default when no stage is named)")
    run.add_argument("--quick", action="store_true", help="one seed, few epochs: a smoke run of a couple of minutes")
    run.add_argument("--json", default=None, help="write the result JSON here")
    run.add_argument("--out", default=None, help="directory for the JSON, table and PNG (default runs/clusterfit)")
    run.add_argument("--data", default="mnist5k")
    run.add_argument("--data-root", default=None)
    run.add_argument("--kind", default="both", choices=("conv", "adder", "both"))
    add_seeds(run, "0 1 2 (--quick: 0)")
    run.add_argument("--pre-epochs", type=int, default=None)
    run.add_argument("--cf-epochs", type=int, default=None)
    run.add_argument("--adder-pre-epochs", type=int, default=None)
    run.add_argument("--adder-cf-epochs", type=int, default=None)
    run.add_argument("--limit-batches", type=positive_int, default=None, help="at most this many batches per epoch")
    run.add_argument("--device", default="cpu")
    run.add_argument("--threads", type=int, default=1, help="torch/BLAS/faiss threads (default 1: on a shared "
                     "machine more threads spin and slow everything down)")
    run.add_argument("--phase", choices=("tune", "eval"), default=None,
                     help="one chunk of the second version (issue 27, pre-registered in methods/README.md): "
                          "tune (K on the 0-4 validation images) or eval (test images); with --merge, combine")
    run.add_argument("--choice", default=None, metavar="JSON", help="--phase eval: the tuning phase's choice file")
    add_merge(run, "combine the JSONs of runs over disjoint seeds (one process per seed) and report them")
    run.add_argument("--no-progress", action="store_true")

    pre = sub.add_parser("pretrain", help="train N_pre on labels with symmetric noise")
    _common(pre), _model_args(pre), _train_args(pre)
    pre.add_argument("--noise", type=float, default=0.0, help="symmetric label noise rate p in [0, 1)")
    pre.add_argument("--augment", action="store_true", help="the dataset's train augmentation (default off)")
    pre.add_argument("--out", required=True, help="run directory; the model goes to OUT/model.pt")

    fe = sub.add_parser("features", help="N_pre's L2-normalised features of the train split")
    _common(fe)
    fe.add_argument("--checkpoint", required=True, help="a model.pt written by pretrain or fit")
    fe.add_argument("--layer", default="features")
    fe.add_argument("--pca", type=int, default=None, help="project to this many dimensions first")
    fe.add_argument("--whiten", action="store_true")
    fe.add_argument("--crop", type=float, default=None, help="crop side fraction before extraction "
                    "(VISSL: 0.875, a centre crop in its ImageNet config)")
    fe.add_argument("--crop-mode", choices=("center", "random"), default="center",
                    help="centre crop (VISSL's ImageNet extraction) or random crop (its RotNet config)")
    fe.add_argument("--out", required=True, help="features file (.pt)")

    cl = sub.add_parser("cluster", help="k-means of saved features into pseudo-labels")
    cl.add_argument("--features", required=True, help="a file written by the features stage")
    cl.add_argument("--k", type=int, required=True)
    cl.add_argument("--iters", type=int, default=50)
    cl.add_argument("--seed", type=int, default=1234)
    cl.add_argument("--solver", default="auto", choices=("auto", "faiss", "torch"),
                    help="k-means by faiss or torch (default auto: faiss when installed)")
    cl.add_argument("--backend", dest="solver", choices=("auto", "faiss", "torch"), help=argparse.SUPPRESS)
    cl.add_argument("--sample", type=int, default=None, help="fit on this many points (default: 256 per centroid)")
    cl.add_argument("--spherical", action="store_true")
    cl.add_argument("--device", default=None, help="where torch k-means runs (cpu, cuda); faiss uses its GPUs")
    cl.add_argument("--out", required=True, help="pseudo-label file (.pt)")

    ft = sub.add_parser("fit", help="train N_cf from scratch on pseudo-labels")
    _common(ft), _model_args(ft), _train_args(ft)
    ft.add_argument("--labels", required=True, help="a file written by the cluster stage")
    ft.add_argument("--crop-scale", type=unit_interval, nargs=2, default=(0.08, 1.0))
    ft.add_argument("--jitter", type=nonneg_float, default=0.4, help="brightness/contrast/saturation jitter")
    ft.add_argument("--no-flip", action="store_true", help="no horizontal flip (digits, text)")
    ft.add_argument("--out", required=True, help="run directory; the model goes to OUT/model.pt")

    pr = sub.add_parser("probe", help="linear probe on frozen features with the true labels")
    _common(pr)
    g = pr.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="a model.pt written by pretrain or fit")
    g.add_argument("--random", metavar="MODEL", help="a random-init network of this name instead")
    pr.add_argument("--kind", default="conv", choices=("conv", "adder"), help="kind of the --random network")
    pr.add_argument("--layer", default="features")
    pr.add_argument("--json", default=None)
    return ap


def _progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _device(args):
    from addernet.train import pick_device
    return pick_device(args.device)


def _is_main() -> bool:
    from addernet.train.distributed import is_main
    return is_main()


def _save_model(model, path: str, meta: dict):
    import torch
    if _is_main():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save({"format": "clusterfit-model/1", **meta, "state_dict": model.state_dict()}, path)


def _build(name: str, **kw):
    from methods.common.backbone import build_backbone
    try:
        return build_backbone(name, **kw)
    except ValueError as e:
        raise UserError(str(e)) from None


def _load_model(path: str):
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found")
    obj = load_torch_file(path, "--checkpoint")
    if not isinstance(obj, dict) or obj.get("format") != "clusterfit-model/1":
        raise UserError(f"{path} is not a model.pt written by 'pretrain' or 'fit'")
    model = _build(obj["model"], num_classes=obj["num_classes"], kind=obj["kind"], in_channels=obj["in_channels"])
    model.load_state_dict(obj["state_dict"])
    return model, obj


def _init_dist(args):
    """The device to run on: cuda:LOCAL_RANK (or the CPU) under torchrun with --distributed."""
    if args.distributed:
        from addernet.train import distributed
        try:
            return distributed.setup(args.device)[1]
        except RuntimeError as e:
            raise UserError(str(e)) from None
    return _device(args)


def _finish_dist(args):
    if args.distributed:
        from addernet.train import distributed
        distributed.cleanup()


def _dataset_info(args):
    from addernet.data import dataset_info
    try:
        return dataset_info(args.data, args.data_root)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def _check_train_args(args):
    if args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {args.epochs}")
    if args.limit_batches is not None and args.limit_batches < 1:
        raise UserError(f"--limit-batches must be at least 1, got {args.limit_batches}")


def cmd_pretrain(args):
    from addernet.train import seed_everything
    from .pretrain import train_pre
    _check_train_args(args)
    if not 0.0 <= args.noise < 1.0:
        raise UserError(f"--noise must be in [0, 1), got {args.noise}")
    info = _dataset_info(args)
    seed_everything(args.seed)
    model = _build(args.model, num_classes=info.num_classes, kind=args.kind, in_channels=info.in_channels)
    train_pre(model, args.data, root=args.data_root, noise=args.noise, noise_seed=args.seed, epochs=args.epochs,
              batch_size=args.batch_size, lr=args.lr, augment=args.augment, device=args.device, seed=args.seed,
              out=args.out, num_workers=args.workers, distributed=args.distributed, progress=_progress(args),
              limit_batches=args.limit_batches)
    _save_model(model, os.path.join(args.out, "model.pt"),
                {"model": args.model, "kind": args.kind, "num_classes": info.num_classes,
                 "in_channels": info.in_channels, "noise": args.noise, "stage": "pretrain"})
    _finish_dist(args)


def cmd_features(args):
    import torch
    from .evaluation import plain_loaders
    from .features import cluster_features
    _dataset_info(args)
    device = _init_dist(args)
    model, meta = _load_model(args.checkpoint)
    train, _, _ = plain_loaders(args.data, args.data_root, args.batch_size, args.workers)
    feats, labels, pca = cluster_features(model, train, layer=args.layer, device=device, pca=args.pca,
                                          whiten=args.whiten, crop=args.crop, crop_mode=args.crop_mode,
                                          seed=args.seed,
                                          progress=_progress(args))
    if _is_main():
        torch.save({"format": "clusterfit-features/1", "features": feats, "labels": labels,
                    "config": {"checkpoint": args.checkpoint, "layer": args.layer, "pca": args.pca,
                               "crop": args.crop, "crop_mode": args.crop_mode, "data": args.data,
                               "model": meta["model"], "kind": meta["kind"]}},
                   args.out)
        print(f"{tuple(feats.shape)} features -> {args.out}")
    _finish_dist(args)


def cmd_cluster(args):
    from .pseudo_labels import make_pseudo_labels
    if not os.path.isfile(args.features):
        raise UserError(f"features file {args.features} not found")
    obj = load_torch_file(args.features, "--features")
    if not isinstance(obj, dict) or obj.get("format") != "clusterfit-features/1":
        raise UserError(f"{args.features} is not a file written by the 'features' stage")
    n = obj["features"].shape[0]
    if not 1 <= args.k <= n:
        raise UserError(f"--k must be in 1..{n} (the number of images), got {args.k}")
    pseudo = make_pseudo_labels(obj["features"], args.k, iters=args.iters, seed=args.seed, spherical=args.spherical,
                                solver=args.solver, sample=args.sample if args.sample else "auto",
                                device=args.device,
                                config={"features": args.features, **obj["config"]})
    pseudo.save(args.out)
    sizes = pseudo.cluster_sizes()
    solver = pseudo.config.get("solver", pseudo.config.get("backend"))  # "backend" in files made before the rename
    print(f"{n} images -> {args.k} clusters ({solver}; sizes {int(sizes.min())}.."
          f"{int(sizes.max())}, inertia {pseudo.config['inertia']:.4g}) -> {args.out}")


def cmd_fit(args):
    from addernet.train import seed_everything
    from .fit_cf import CFAugment, train_cf
    from .pseudo_labels import PseudoLabels
    _check_train_args(args)
    info = _dataset_info(args)
    load_torch_file(args.labels, "--labels")  # a garbage or unsafe file said as one line, not a traceback
    try:
        pseudo = PseudoLabels.load(args.labels)
        aug = CFAugment(crop_scale=tuple(args.crop_scale), brightness=args.jitter, contrast=args.jitter,
                        saturation=args.jitter, flip=not args.no_flip)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    seed_everything(args.seed)
    model = _build(args.model, num_classes=pseudo.num_clusters, kind=args.kind, in_channels=info.in_channels)
    try:
        train_cf(model, args.data, pseudo, root=args.data_root, epochs=args.epochs, batch_size=args.batch_size,
                 lr=args.lr, aug=aug, device=args.device, seed=args.seed, out=args.out, num_workers=args.workers,
                 distributed=args.distributed, progress=_progress(args), limit_batches=args.limit_batches)
    except ValueError as e:   # pseudo-labels made for another dataset
        if "pseudo-labels for a dataset" in str(e):
            raise UserError(f"{args.labels}: {e}") from None
        raise
    _save_model(model, os.path.join(args.out, "model.pt"),
                {"model": args.model, "kind": args.kind, "num_classes": pseudo.num_clusters,
                 "in_channels": info.in_channels, "labels": args.labels, "stage": "fit"})
    _finish_dist(args)


def cmd_probe(args):
    from addernet.train import seed_everything
    from .evaluation import plain_loaders, probe_accuracy
    info = _dataset_info(args)
    device = _init_dist(args)
    if args.random:
        seed_everything(args.seed)
        model = _build(args.random, num_classes=info.num_classes, kind=args.kind, in_channels=info.in_channels)
        what, recal = f"random-init {args.kind} {args.random}", True
    else:
        model, meta = _load_model(args.checkpoint)
        what, recal = f"{meta['kind']} {meta['model']} from {args.checkpoint}", None
    train, test, _ = plain_loaders(args.data, args.data_root, args.batch_size, args.workers)
    acc = probe_accuracy(model, train, test, layer=args.layer, device=device, recalibrate=recal,
                         seed=args.seed, progress=_progress(args))
    if _is_main():
        print(f"linear probe on {args.layer!r} of {what}: {100 * acc:.2f}%")
        if args.json:
            from methods.common import report
            report.write_json(args.json, {"what": what, "layer": args.layer, "probe_acc": round(100 * acc, 2)})
    _finish_dist(args)


def _report(result: dict, out: str, path: str):
    from methods.common import report
    from . import experiment as ex
    report.write_json(path, result)
    md = ex.table(result)
    with open(os.path.join(out, "clusterfit.md"), "w") as f:
        f.write(md)
    ex.plot(result, os.path.join(out, "clusterfit_noise.png"))
    print(md)
    for c in result["claims"]:
        verdict = "holds" if c["holds"] else "does NOT hold"
        print(f"{c['kind']} p={c['noise']}: best N_cf (K={c['best_K']}) {c['cf_mean']:.2f} ± {c['cf_std']:.2f} vs "
              f"N_pre {c['pre_mean']:.2f} ± {c['pre_std']:.2f}: margin {c['margin']:+.2f} vs stds "
              f"{c['sum_of_stds']:.2f} -> {verdict}")
    print(f"JSON -> {path}; table and PNG -> {out}")


def cmd_v2(args):
    """The second version's chunks: one (kind, phase, seed) a call (methods/README.md, "Second version")."""
    from methods.common.chunks import cli_phase
    from . import preregistered as P
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    from .experiment import set_threads
    set_threads(args.threads)
    return cli_phase(P, args, lambda seed, choice: P.run_chunk(
        args.kind, args.phase, seed, ks=None if choice is None else choice.get("ks"), quick=args.quick,
        json_path=args.json))


def cmd_run(args):
    from . import experiment as ex
    if args.phase is not None:
        return cmd_v2(args)
    out = args.out or os.path.join("runs", "clusterfit")
    path = args.json or os.path.join(out, "clusterfit.json")
    if args.merge:
        parts = read_merge(args.merge, keys=("config", "cells", "timing", "pre_fit", "total_seconds"))
        try:
            result = ex.merge(parts)
        except (KeyError, ValueError) as e:
            raise UserError(f"cannot merge {' '.join(args.merge)}: {e}") from None
        os.makedirs(out, exist_ok=True)
        _report(result, out, path)
        return
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    kw = {"threads": args.threads}
    if args.seeds is not None:
        kw["seeds"] = seeds_of(args.seeds)
    for name in ("pre_epochs", "cf_epochs", "adder_pre_epochs", "adder_cf_epochs"):
        if getattr(args, name) is not None:
            if getattr(args, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
            kw[name] = getattr(args, name)
    kw.update(data=args.data, root=args.data_root, device=args.device, limit_batches=args.limit_batches,
              kinds=("conv", "adder") if args.kind == "both" else (args.kind,))
    _dataset_info(args)
    check_data(args.data, args.data_root)
    cfg = ex.MiniConfig.quick(**kw) if args.quick else ex.MiniConfig(**kw)
    os.makedirs(out, exist_ok=True)
    log = None if _progress(args) else (lambda msg: print(msg, flush=True))
    result = ex.run(cfg, progress=_progress(args), log=log)
    if args.quick:
        from methods.common.stats import QUICK_NOTE
        result["note"] = QUICK_NOTE
    _report(result, out, path)
    if args.quick:
        print(result["note"])
    print(f"{result['total_seconds']:.0f} s")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in STAGES + ("-h", "--help"):
        argv = ["run", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    # A stage's inputs are the user's (files, layer names, K): the library's ValueError and
    # FileNotFoundError name the problem, so they become the one-line error too. The miniature
    # checks its arguments up front, so an error inside it is a bug and keeps its traceback.
    user_errors = () if args.stage == "run" else (ValueError, FileNotFoundError)
    cmd = {"pretrain": cmd_pretrain, "features": cmd_features, "cluster": cmd_cluster, "fit": cmd_fit,
           "probe": cmd_probe, "run": cmd_run}[args.stage]
    return run_main(f"python -m methods.clusterfit {args.stage}",
                    lambda: (check_run_flags(args, out_is_file=args.stage in ("features", "cluster")), cmd(args))[1],
                    user_errors)


if __name__ == "__main__":
    sys.exit(main())
