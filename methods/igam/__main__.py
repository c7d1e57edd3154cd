"""``python -m methods.igam``: the IGAM miniature on mnist5k (see ``experiment``)."""
from __future__ import annotations

import argparse
import dataclasses
import sys

from methods.common.cli import (Parser, UserError, add_merge, add_seeds, check_run_flags, nonneg_float, nonneg_int,
                                positive_int, read_merge, run_main, seeds_of)

from . import experiment
from .schedule import official_warmup_epochs

PROG = "python -m methods.igam"


def _students(text: str) -> tuple:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in experiment.STUDENTS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"--students takes a comma list of {', '.join(experiment.STUDENTS)}, "
                                         f"got {text!r}")
    return names


def parser() -> argparse.ArgumentParser:
    p = Parser(prog=PROG, description=__doc__)
    p.add_argument("--quick", action="store_true", help="one seed, short training, 200 test images (minutes)")
    p.add_argument("--schedule", choices=experiment.SCHEDULES, default="cosine",
                   help="cosine: the 6-epoch miniature; official: the pre-registered official-schedule run "
                        f"({experiment.OFFICIAL_EPOCHS} epochs at batch 32, lr x0.1 at 1/2 and 3/4, IGAM on for "
                        "the last 1/8; see methods/README.md)")
    p.add_argument("--json", metavar="PATH", help="write {'rows': [...]} here")
    p.add_argument("--out", metavar="DIR", default="runs/igam", help="table, PNG and teacher cache (default runs/igam)")
    p.add_argument("--data", default="mnist5k", help="dataset: only the embedded mnist5k is supported")
    p.add_argument("--data-root", default=None, help="unused: mnist5k is embedded")
    p.add_argument("--kind", choices=("conv", "adder", "both"), default="both",
                   help="students' kind: conv (CE, L_diff, IGAM), adder (CE, IGAM) or both")
    p.add_argument("--students", type=_students, default=None,
                   help="comma list of ce, ldiff, igam (conv students to train; default all three)")
    add_seeds(p, "0 1 2 for conv students and 0 for adder students; a given --seeds applies to both")
    p.add_argument("--epochs", type=positive_int, default=None, help="student epochs")
    p.add_argument("--teacher-epochs", type=positive_int, default=None, help="robust teacher epochs")
    p.add_argument("--beta", type=nonneg_float, default=None, help="weight of -CE_D (default 2)")
    p.add_argument("--gamma", type=nonneg_float, default=None,
                   help="weight of L_diff, [0, 1] pixels, batch mean of per-sample sums (default 1, a project choice; "
                        "the official gamma 10 is 10 N / 255^2 here: 0.0049 at batch 32, 0.0098 at batch 64)")
    p.add_argument("--warmup-epochs", type=nonneg_int, default=None,
                   help="plain CE epochs before IGAM switches on (default 0; with --schedule official, "
                        "all but the last 1/8 of --epochs)")
    p.add_argument("--eval-samples", type=positive_int, default=None, help="test images attacked")
    p.add_argument("--limit-batches", type=positive_int, default=None, help="batches per epoch (smoke runs)")
    p.add_argument("--strong-attack", type=positive_int, nargs=2, metavar=("STEPS", "RESTARTS"), default=None,
                   help="students also face PGD-STEPS on cross-entropy and on the margin loss, RESTARTS "
                        "random starts each (adder students under both grad modes), worst case per image, "
                        "at eps >= 0.1 (details[].pgd_strong); issue 27's strong attack is 100 5")
    p.add_argument("--no-adapter", action="store_true", help="skip the run with a 32x32 teacher through an adapter")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads (on a shared machine 1 avoids oversubscription stalls)")
    p.add_argument("--no-progress", action="store_true")
    v2 = p.add_argument_group("second version (issue 27, pre-registered in methods/README.md)")
    v2.add_argument("--phase", choices=("tune", "eval"), default=None,
                    help="run one chunk of the pre-registered protocol, one --kind and one of --seeds: tune (grid "
                         "on the validation images) or eval (the chosen weights on the test images); with --merge, "
                         "combine chunks")
    v2.add_argument("--arms", default=None, help="comma list of ce, igam, igam_plain, gradnorm, ldiff (default all)")
    v2.add_argument("--choice", metavar="JSON", default=None, help="--phase eval: the tuning phase's choice file")
    add_merge(p, "combine the JSON of runs that trained different students into --json, then exit")
    return p


def _merge(args, cfg) -> int:
    import os
    if not args.json:
        raise UserError("--merge needs --json for the combined result")
    parts = read_merge(args.merge, keys=("rows", "teacher"))
    try:
        merged = experiment.merge_results(parts, cfg)
    except ValueError as e:
        raise UserError(f"--merge: {e}") from None
    from methods.common.report import write_json
    write_json(args.json, merged)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "igam_table.md"), "w") as f:
            f.write(merged["table"] + "\n")
    print(merged["table"])
    return 0


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return run_main(PROG, lambda: _v2(args) if args.phase is not None else _main(args))


def _v2(args) -> int:
    """The second version's chunks (methods/README.md, "Second version"): one (kind, phase, seed) a call."""
    from methods.common.chunks import cli_phase
    from . import preregistered as P
    arms = P.ARMS if args.arms is None else tuple(a.strip() for a in args.arms.split(",") if a.strip())
    bad = [a for a in arms if a not in P.ARMS]
    if bad or not arms:
        raise UserError(f"--arms takes a comma list of {', '.join(P.ARMS)}, got {args.arms!r}")
    if args.threads is not None:
        import torch
        torch.set_num_threads(args.threads)
    return cli_phase(P, args, lambda seed, choice: P.run_chunk(
        args.kind, args.phase, seed, arms=arms, weights=None if choice is None else choice.get("weights"),
        quick=args.quick, out=args.out, json_path=args.json))


def _main(args) -> int:
    if args.data != "mnist5k":
        raise UserError(f"--data {args.data!r} is not supported: the miniature runs on the embedded mnist5k")
    args.seeds = seeds_of(args.seeds)
    check_run_flags(args)
    if args.schedule == "official":
        cfg = experiment.official_config(quick=args.quick)
    else:
        cfg = experiment.quick_config() if args.quick else experiment.Config()
    if args.merge:
        return _merge(args, cfg)
    over = {"kinds": ("conv", "adder") if args.kind == "both" else (args.kind,),
            "progress": not args.no_progress and sys.stderr.isatty(), "device": args.device,
            "data_root": args.data_root}
    for name in ("students", "seeds", "epochs", "beta", "gamma", "eval_samples", "limit_batches"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    if args.warmup_epochs is not None:
        over["warmup_epochs"] = args.warmup_epochs
    elif args.schedule == "official" and args.epochs is not None:
        over["warmup_epochs"] = official_warmup_epochs(args.epochs)
    if over.get("warmup_epochs", cfg.warmup_epochs) > over.get("epochs", cfg.epochs):
        raise UserError(f"--warmup-epochs ({over.get('warmup_epochs')}) exceeds the epochs "
                        f"({over.get('epochs', cfg.epochs)})")
    if args.seeds is not None:
        over["adder_seeds"] = None     # explicit seeds apply to the adder students too
    if args.strong_attack is not None:
        over["strong_attack"] = tuple(args.strong_attack)
    if args.no_adapter:
        over["adapter_teacher"] = None
    cfg = dataclasses.replace(cfg, **over)
    if args.teacher_epochs is not None:
        cfg.teacher = dataclasses.replace(cfg.teacher, epochs=args.teacher_epochs)
        if cfg.adapter_teacher is not None:
            cfg.adapter_teacher = dataclasses.replace(cfg.adapter_teacher, epochs=args.teacher_epochs)
    if args.limit_batches is not None:
        cfg.head_epochs = min(cfg.head_epochs, 1)
        cfg.transfer_epochs = min(cfg.transfer_epochs, 1)
    import torch
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        torch.device(cfg.device)
    except RuntimeError as e:
        raise UserError(f"--device {cfg.device!r}: {e}") from None
    experiment.run(cfg, json_path=args.json, out=args.out, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
