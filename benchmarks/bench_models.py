"""Regenerates the model part of RESULTS.md: the paper's cost table and measured latency ratios.

    python benchmarks/bench_models.py                 # writes benchmarks/results/results_models.md, bench_<model>.png
    python benchmarks/bench_models.py --no-latency    # the cost tables only (seconds)

Counts are per image and exact (addernet.bench.counts); latency is measured here, CNN and AdderNet
interleaved in one process with the thread count fixed, and only ratios are reported: absolute
times on a shared machine say little.
"""
from __future__ import annotations

import datetime
import os
import sys

import torch

from addernet.bench import report
from addernet.bench.counts import CONVENTION
from addernet.bench.model_bench import BenchError, bench_model, check_backends
from addernet.cli.checks import Parser, UsageError, check_out_file, positive_float, positive_int
from addernet.cli.checks import report as report_error
from addernet.machine import cpu_flags, cpu_model

HERE = os.path.dirname(os.path.abspath(__file__))

# The paper's numbers (CNN mul, CNN add, AdderNet mul, AdderNet add), as reported; '~0' is the
# paper's "no multiplications besides the first and last layers" (the ResNets).
PAPER = {
    "lenet5_bn": ("435K", "435K", "0", "870K"),  # all-adder: the paper counts no multiplications
    "resnet20": ("41.17M", "41.17M", "~0", "82.34M"),
    "resnet18": ("1.8G", "1.8G", "~0", "3.6G"),
    "resnet50": ("3.9G", "3.9G", "~0", "7.7G"),
}
# model -> (batch, time each layer too); small batches keep the ImageNet models to about a minute.
RUNS = {"lenet5_bn": (32, True), "resnet20": (32, True), "resnet18": (2, True), "resnet50": (1, False)}


def cost_tables(results: dict) -> list[str]:
    rows, whole = [], []
    for name, r in results.items():
        c, a = r["counts"]["conv"], r["counts"]["adder"]
        cw, aw = c["weight_layers"], a["weight_layers"]
        p = PAPER[name]
        rows.append([name, "x".join(map(str, r["input_shape"])), report.num(cw["mults"]), report.num(cw["adds"]),
                     report.num(aw["mults"]), report.num(aw["adds"]), report.num(aw["abs"]),
                     f"{p[0]} / {p[1]}", f"{p[2]} / {p[3]}"])
        ct, at = c["totals"], a["totals"]
        whole.append([name, report.num(ct["mults"]), report.num(ct["adds"]), report.num(at["mults"]),
                      report.num(at["adds"]), report.num(at["abs"]), report.num(at["cmps"]),
                      f"{c['energy_uJ']:.4g}", f"{a['energy_uJ']:.4g}", report.ratio(a["energy_uJ"], c["energy_uJ"])])
    return [
        "### Cost per image: weight layers (conv / adder / linear), as the paper counts",
        report.table(["model", "input", "CNN mults", "CNN adds", "AdderNet mults", "AdderNet adds", "AdderNet abs",
                      "paper CNN mul / add", "paper AdderNet mul / add"], rows, md=True),
        "The ResNets' AdderNet mults are their first and last layers, which stay multiplicative (as in the paper); "
        "LeNet-5-BN is all-adder, as the paper's MNIST network: its only multiplications are BatchNorm's. "
        "Paper numbers are as reported, not re-derived: ResNet-20 from the paper's CIFAR table (about 41M, "
        "PAPERS.md), LeNet-5-BN, ResNet-18 and ResNet-50 from summaries of its MNIST and ImageNet results. "
        "This project's LeNet-5-BN is the classic 6-16-120-84-10 layout, 416.5K MACs against the paper's reported 435K; "
        "ResNet-50 is torchvision's v1.5 layout (stride in the 3x3), 4.09G MACs.",
        "### Cost per image: whole model, and energy (float32, Horowitz ISSCC 2014, 45 nm)",
        report.table(["model", "CNN mults", "CNN adds", "AdderNet mults", "AdderNet adds", "AdderNet abs", "comparisons",
                      "CNN µJ", "AdderNet µJ", "AdderNet/CNN energy"], whole, md=True),
        "Whole model: BatchNorm (1 mult + 1 add per element, not folded), ReLU, pooling and residual adds included.",
    ]


def latency_table(results: dict) -> list[str]:
    rows = []
    for name, r in results.items():
        if r["latency"] is None:
            continue
        for be in r["backends"]:
            lat, mem = r["latency"], r["memory"]
            q = lambda mode: report.ratio(lat[mode][be]["median_ms"], lat[mode]["conv"]["median_ms"])
            # A spread needs 4 samples; rounds cut short by --max-seconds have none to give.
            spreads = [lat[m][k]["spread"] for m in lat for k in ("conv", be) if lat[m][k]["samples"] >= 4]
            layers = [row["latency"]["fwd"][be]["median_ms"] / row["latency"]["fwd"]["conv"]["median_ms"]
                      for row in r["layers"] if "latency" in row]
            rng = f"{min(layers):.2g} - {max(layers):.2g}" if layers else "not timed"
            rows.append([name, str(r["batch_size"]), be, q("fwd"), q("train"), rng,
                         report.ratio(mem["fwd"][be], mem["fwd"]["conv"]), report.ratio(mem["train"][be], mem["train"]["conv"]),
                         f"{100 * max(spreads):.0f}%" if spreads else "n/a (3 runs)"])
    return ["### Latency and peak memory, AdderNet / CNN (same machine, same process, interleaved)",
            report.table(["model", "batch", "adder backend", "inference", "train step", "per-layer inference",
                          "peak mem inference", "peak mem train", "largest spread"], rows, md=True),
            "Ratios of medians; > 1 means AdderNet is slower. 'train step' = forward + cross-entropy + backward + "
            "SGD step. Spread: the largest half-IQR relative to its median among the timings behind a row. "
            "Per-layer: the range over the adder layers, each timed alone at its shape in the model. "
            "On a shared machine a 2-thread oneDNN convolution stalls whenever one of its threads is descheduled "
            "(seen here: 4 ms with 1 thread, 50-90 ms with 2 for LeNet's conv2 under load), so per-layer ratios far "
            "below the whole-model ratio are scheduling noise, not kernel speed; rerun on an idle machine."]


def main(argv=None) -> int:
    p = Parser(prog="bench_models.py", description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--repeats", type=positive_int, default=5)
    p.add_argument("--max-seconds", type=positive_float, default=8.0, help="per timed group; at least 3 rounds run")
    p.add_argument("--backends", default="native")
    p.add_argument("--models", default=",".join(RUNS), help="comma-separated, from: " + ",".join(RUNS))
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--out", default=os.path.join(HERE, "results", "results_models.md"))
    args = p.parse_args(argv)
    try:  # before the first model: a mistake was a traceback, an unwritable --out one after every run
        unknown = [n for n in args.models.split(",") if n not in RUNS]
        if unknown:
            raise UsageError(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(RUNS)}")
        try:
            check_backends(args.backends, "cpu")
        except BenchError as exc:
            raise UsageError(f"--backends {args.backends}: {exc}") from None
        check_out_file(args.out, "--out")
    except UsageError as exc:
        return report_error("bench_models.py", exc)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    load_before = os.getloadavg()[0]
    results = {}
    for name in args.models.split(","):
        batch, per_layer = RUNS[name]
        print(f"[bench_models] {name} ...", file=sys.stderr, flush=True)
        results[name] = bench_model(name, "both", batch, "cpu", args.backends, threads=args.threads,
                                    latency=not args.no_latency, repeats=args.repeats, max_seconds=args.max_seconds,
                                    layer_latency=per_layer)
        if per_layer and not args.no_latency:
            report.plot(results[name], os.path.join(os.path.dirname(args.out), f"bench_{name}.png"))
    m = next(iter(results.values()))["machine"]
    lines = [
        "## Models: multiplications, additions, energy and latency",
        f"Generated by `python benchmarks/bench_models.py` on {datetime.date.today()}: {m['cpu']} "
        f"[{' '.join(cpu_flags())}], {args.threads} threads, torch {torch.__version__}, addernet {m['addernet']}. "
        f"CPU model as reported: {cpu_model()}. Load average (1 min) {load_before:.1f} before the run, "
        f"{os.getloadavg()[0]:.1f} after.",
        "```\n" + CONVENTION + "\n```",
        *cost_tables(results),
    ]
    if not args.no_latency:
        lines += latency_table(results)
        plots = [n for n in results if RUNS[n][1]]
        lines.append("Per-layer plots (operations per layer; adder/conv latency ratio per layer): "
                     + ", ".join(f"[{n}](bench_{n}.png)" for n in plots))
    with open(args.out, "w") as f:
        f.write("\n\n".join(lines) + "\n")
    print("\n\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
