"""The AdderNet paper's MNIST section, in miniature: accuracy, Figures 1 and 2, weight distributions,
the gradient ablation and the VIA Nano 2000 cycle counts.

    PYTHONPATH=. python benchmarks/paper_mnist.py                  # mnist5k, 3 seeds (~15 CPU minutes)
    PYTHONPATH=. python benchmarks/paper_mnist.py --quick          # 1 seed, 1000 images, 1-2 epochs
    # the same over 3 processes, one seed each, then joined:
    python benchmarks/paper_mnist.py --seeds 0 --out runs/s0 & python benchmarks/paper_mnist.py --seeds 1 \
        --no-figures --out runs/s1 & ... ; python benchmarks/paper_mnist.py --merge runs/s0 runs/s1 runs/s2
    PYTHONPATH=. python benchmarks/paper_mnist.py --data mnist --data-root DIR   # the real MNIST

Writes into --out: paper_mnist.json, paper_mnist.md (every table), fig1_features.png,
fig2_filters.png, weights.png. Every network is the all-adder LeNet-5-BN (only BatchNorm
multiplies, as the paper's) or its CNN twin, trained with addernet.train.fit: SGD momentum 0.9,
weight decay 5e-4, lr 0.1 with a per-step cosine (the paper's MNIST recipe, shorter), batch 64.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # methods.common, when run as a script from anywhere
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Subset  # noqa: E402
from tqdm import tqdm  # noqa: E402

from addernet.bench.cost_table import load_table  # noqa: E402
from addernet.bench.model_bench import bench_model  # noqa: E402
from addernet.data import dataset_info, get_dataset, make_loaders  # noqa: E402
from addernet.models import get_model, recalibrate_bn  # noqa: E402
from addernet.nn import AdderConv2d  # noqa: E402
from addernet.train import evaluate, fit, seed_everything  # noqa: E402
from methods.common import extract_features  # noqa: E402
from methods.common.report import table_markdown, write_json  # noqa: E402

import paper_mnist_figures as figs  # noqa: E402
import paper_mnist_grads as grads  # noqa: E402

DATA = ("mnist5k", "mnist")
# The paper's numbers (PAPERS.md; the issue for the cycles).
PAPER = {"acc": {"adder": 99.4, "conv": 99.4}, "ops": {"conv": {"mults": 435_000, "adds": 435_000},
                                                       "adder": {"mults": 0, "adds": 870_000}},
         "cycles": {"conv": "2.6M", "adder": "1.7M"}}
# Per part, (full run, --quick). The full run is sized for ~15 CPU minutes on a shared 2-core machine:
# 2000 of mnist5k's 4000 training images (all 1000 held-out ones), a few epochs per network.
BUDGET = {"epochs": (3, 2), "fig1_epochs": (4, 2), "ablation_epochs": (1, 1), "train_size": (2000, 1000),
          "test_size": (None, None)}


class UserError(Exception):
    pass


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="1 seed, 1000 training images, 1-2 epochs (a smoke run)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "paper_mnist"), help="output folder")
    p.add_argument("--data", default="mnist5k", help="mnist5k (embedded) or mnist (needs --data-root)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; --quick: 0)")
    p.add_argument("--epochs", type=int, default=None, help="accuracy runs")
    p.add_argument("--fig1-epochs", type=int, default=None)
    p.add_argument("--ablation-epochs", type=int, default=None)
    p.add_argument("--train-size", type=int, default=None, help="a seeded subset of the training images")
    p.add_argument("--test-size", type=int, default=None, help="a seeded subset of the held-out images")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-figures", action="store_true", help="accuracy and ablation only (a shard of seeds "
                   "for --merge; the figures come from the shard that has them)")
    p.add_argument("--merge", nargs="+", metavar="DIR", default=None,
                   help="combine the paper_mnist.json of runs over disjoint seeds into --out (no training)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.figures = not args.no_figures
    if args.data not in DATA:
        raise UserError(f"--data must be one of {', '.join(DATA)}, got {args.data!r}")
    try:
        args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    for key, (full, quick) in BUDGET.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
        v = getattr(args, key)
        if v is not None and v < 1:
            raise UserError(f"--{key.replace('_', '-')} must be positive, got {v}")
    if args.batch_size < 1 or args.threads < 1:
        raise UserError("--batch-size and --threads must be positive")
    args.progress = not args.no_progress and sys.stderr.isatty()
    return args


# ----------------------------------------------------------------------------- data and training

def load_data(args):
    try:
        train = get_dataset(args.data, args.data_root, train=True)
        test = get_dataset(args.data, args.data_root, train=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load {args.data}: {str(exc).splitlines()[0]}") from None
    g = torch.Generator().manual_seed(1234)  # one subset for every seed and run
    if args.train_size and args.train_size < len(train):
        train = Subset(train, torch.randperm(len(train), generator=g)[:args.train_size].tolist())
    if args.test_size and args.test_size < len(test):
        test = Subset(test, torch.randperm(len(test), generator=g)[:args.test_size].tolist())
    return train, test, dataset_info(args.data)


def loaders(data, args, seed):
    train, test, info = data
    return make_loaders((train, test), None, args.batch_size, seed=seed, info=info)


def train(model, data, args, seed, epochs):
    """fit() with the paper's MNIST recipe (shorter). Returns the model with its BatchNorm statistics
    re-estimated over the training set, and a dict: test accuracy (%) as trained ('acc_running', the
    running statistics fit left) and after that re-estimate ('acc'), and the last epoch's train loss.

    Why both: in runs this short the adder layers' outputs move faster than BatchNorm's running
    averages follow (benchmarks/results/results_train.md), so eval-mode accuracy can sit near chance while
    the weights are good; re-estimating the statistics for the final weights removes that lag, for
    both kinds alike. The paper's 50-epoch runs do not have the problem."""
    tr, te, info = loaders(data, args, seed)
    res = fit(model, (tr, te, info), epochs=epochs, seed=seed, lr=0.1, device="cpu", progress=False,
              log=lambda *a, **k: None)
    model = recalibrate_bn(res.model, tr, batches=None)
    out = {"acc_running": 100.0 * float(res.final["test_acc"]), "acc": 100.0 * float(evaluate(model, te)["acc"]),
           "train_loss": float(res.final.get("train_loss", math.nan))}
    return model.eval(), out


def built(make, seed):
    seed_everything(seed)  # the initial weights follow the seed too
    return make()


def mean_std(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def fmt(values):
    m, s = mean_std(values)
    return f"{m:.2f} ± {s:.2f}" if len(values) > 1 else f"{m:.2f}"


# ----------------------------------------------------------------------------- the parts

def two_d_lenet(kind: str) -> nn.Module:
    """LeNet-5-BN with a 2-D feature layer before the classifier (Figure 1): fc2 gives 2 features,
    BatchNorm-ed and without ReLU (a ReLU would fold them into one quadrant), fc3 classifies them.
    Every weight layer is an adder layer in kind='adder', a conv in kind='conv'."""
    model = get_model("lenet5_bn", kind=kind)
    make = AdderConv2d if kind == "adder" else nn.Conv2d
    model.fc2, model.bn4, model.relu4 = make(120, 2, 1, bias=False), nn.BatchNorm2d(2), nn.Identity()
    model.fc3 = make(2, 10, 1, bias=False)
    return model


def weight_layers(model):
    return [m.weight.detach().flatten() for m in model.modules() if isinstance(m, (nn.Conv2d, AdderConv2d))]


def cycles() -> dict:
    via = load_table("via_nano_2000")
    paper = {"cnn": via.cost(PAPER["ops"]["conv"], "float32"), "adder": via.cost(PAPER["ops"]["adder"], "float32")}
    r = bench_model("lenet5_bn", latency=False, cost_tables=("via_nano_2000",))
    c = r["costs"]["via_nano_2000"]["per_kind"]
    aw = dict(r["counts"]["adder"]["weight_layers"], abs=0)  # the paper counts no abs
    return {"table": via.citation("float32"), "paper_counts": {k: int(v) for k, v in paper.items()},
            "ours": {"cnn_weight_layers": c["conv"]["weight_layers"], "adder_weight_layers": c["adder"]["weight_layers"],
                     "adder_weight_layers_abs_free": via.cost(aw, "float32"),
                     "cnn_whole": c["conv"]["total"], "adder_whole": c["adder"]["total"]},
            "ops": {k: {key: r["counts"][k]["weight_layers"][key] for key in ("mults", "adds", "abs")}
                    for k in ("conv", "adder")}}


def figures(args, data, models, res, bar) -> None:
    """Figure 1 (2-D features), Figure 2 (first-layer filters of ``models``), weight distributions."""
    seeds, kinds = args.seeds, ("adder", "conv")
    t0 = time.time()
    feats, res["figure1"] = {}, {}
    for kind in kinds:
        model, r = train(built(lambda: two_d_lenet(kind), seeds[0]), data, args, seeds[0], args.fig1_epochs)
        a = r["acc"]
        tr_loader, te_loader, _ = loaders(data, args, seeds[0])
        ftr, ytr = extract_features(model.forward_features, tr_loader)
        fte, yte = extract_features(model.forward_features, te_loader)
        ftr, ytr, fte, yte = (t.numpy() for t in (ftr, ytr, fte, yte))
        feats[kind] = (fte, yte, a / 100)
        res["figure1"][kind] = {"test_acc": a, "test_acc_running_stats": r["acc_running"],
                                **figs.feature_geometry(ftr, ytr, fte, yte)}
        bar.update()
    figs.plot_features(feats, os.path.join(args.out, "fig1_features.png"))
    figs.plot_filters({k: m.conv1.weight.detach().numpy() for k, m in models.items()},
                      os.path.join(args.out, "fig2_filters.png"))
    weights = {k: torch.cat(weight_layers(m)).numpy() for k, m in models.items()}
    res["weights"] = {k: figs.fit_distributions(w) for k, w in weights.items()}
    res["weights"]["adder_at_init"] = figs.fit_distributions(
        torch.cat(weight_layers(built(lambda: get_model("lenet5_bn", kind="adder"), seeds[0]))).numpy())
    res["weights"]["per_layer"] = {k: {n: figs.fit_distributions(mod.weight.detach().numpy())["better_fit"]
                                       for n, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, AdderConv2d))}
                                   for k, m in models.items()}
    figs.plot_weights(weights, res["weights"], os.path.join(args.out, "weights.png"))
    res["wall_seconds"]["figures"] = time.time() - t0


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    data = load_data(args)
    seeds, kinds = args.seeds, ("adder", "conv")
    combos = [(wg, ig, eta) for wg in grads.WEIGHT_GRADS for ig in grads.INPUT_GRADS for eta in (0.2, None)]
    bar = tqdm(total=len(seeds) * (2 + len(combos)) + 2 * args.figures, disable=not args.progress, desc="paper_mnist")
    res = {"config": {k: getattr(args, k) for k in ("data", "seeds", "epochs", "fig1_epochs", "ablation_epochs",
                                                    "train_size", "test_size", "batch_size", "threads", "quick")},
           "train_images": len(data[0]), "test_images": len(data[1]), "paper": PAPER,
           "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "python": platform.python_version()},
           "wall_seconds": {}}

    t0 = time.time()
    acc, running, models = {k: [] for k in kinds}, {k: [] for k in kinds}, {}
    for seed in seeds:
        for kind in kinds:
            model, r = train(built(lambda: get_model("lenet5_bn", kind=kind), seed), data, args, seed, args.epochs)
            acc[kind].append(r["acc"])
            running[kind].append(r["acc_running"])
            models.setdefault(kind, model)  # the first seed's nets for Figure 2 and the weights
            bar.update()
    res["accuracy"] = {k: {"per_seed": v, "mean": mean_std(v)[0], "std": mean_std(v)[1],
                           "running_stats_per_seed": running[k], "running_stats_mean": mean_std(running[k])[0],
                           "running_stats_std": mean_std(running[k])[1]} for k, v in acc.items()}
    res["wall_seconds"]["accuracy"] = time.time() - t0

    if args.figures:
        figures(args, data, models, res, bar)

    t0 = time.time()
    res["ablation"] = []
    for wg, ig, eta in combos:
        row = {"weight_grad": wg, "input_grad": ig, "eta": eta, "acc": [], "acc_running": [], "train_loss": [],
               "seconds": []}
        for seed in seeds:
            t1 = time.time()
            make = lambda: grads.use_gradients(get_model("lenet5_bn", kind="adder", eta=eta), wg, ig)  # noqa: E731
            _, r = train(built(make, seed), data, args, seed, args.ablation_epochs)
            for key in ("acc", "acc_running", "train_loss"):
                row[key].append(r[key])
            row["seconds"].append(time.time() - t1)
            bar.update()
        row["mean"], row["std"] = mean_std(row["acc"])
        row["running_mean"], row["running_std"] = mean_std(row["acc_running"])
        res["ablation"].append(row)
    res["wall_seconds"]["ablation"] = time.time() - t0

    res["cycles"] = cycles()
    bar.close()
    return res


def summarise(res: dict) -> dict:
    """(Re)compute the means and spreads from the per-seed lists."""
    for a in res["accuracy"].values():
        a["mean"], a["std"] = mean_std(a["per_seed"])
        a["running_stats_mean"], a["running_stats_std"] = mean_std(a["running_stats_per_seed"])
    for row in res["ablation"]:
        row["mean"], row["std"] = mean_std(row["acc"])
        row["running_mean"], row["running_std"] = mean_std(row["acc_running"])
    return res


def merge(dirs, out) -> dict:
    """One result from runs over disjoint seeds (same settings otherwise): per-seed lists joined in
    seed order, statistics recomputed, figures and weights from the run that made them."""
    shards = []
    for d in dirs:
        path = os.path.join(d, "paper_mnist.json")
        try:
            with open(path) as f:
                shards.append(json.load(f))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
    same = ("data", "epochs", "fig1_epochs", "ablation_epochs", "train_size", "test_size", "batch_size")
    for sh in shards[1:]:
        diff = [k for k in same if sh["config"][k] != shards[0]["config"][k]]
        if diff:
            raise UserError(f"runs to merge differ in {', '.join(diff)}")
    seeds = [x for sh in shards for x in sh["config"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"runs to merge share seeds: {seeds}")
    with_figs = [i for i, sh in enumerate(shards) if "figure1" in sh]
    base = json.loads(json.dumps(shards[with_figs[0] if with_figs else 0]))
    order = sorted(range(len(seeds)), key=seeds.__getitem__)
    pick = lambda values: [values[i] for i in order]  # noqa: E731
    base["config"]["seeds"] = pick(seeds)
    for k, a in base["accuracy"].items():
        a["per_seed"] = pick([v for sh in shards for v in sh["accuracy"][k]["per_seed"]])
        a["running_stats_per_seed"] = pick([v for sh in shards for v in sh["accuracy"][k]["running_stats_per_seed"]])
    for i, row in enumerate(base["ablation"]):
        rows = [sh["ablation"][i] for sh in shards]
        assert all((r["weight_grad"], r["input_grad"], r["eta"]) == (row["weight_grad"], row["input_grad"], row["eta"])
                   for r in rows)
        for key in ("acc", "acc_running", "train_loss", "seconds"):
            row[key] = pick([v for r in rows for v in r[key]])
    base["wall_seconds"] = {f"run {i} ({', '.join(map(str, sh['config']['seeds']))})": sum(sh["wall_seconds"].values())
                            for i, sh in enumerate(shards)}
    base["merged_from"] = [os.path.abspath(d) for d in dirs]
    if with_figs and os.path.abspath(dirs[with_figs[0]]) != os.path.abspath(out):
        for name in ("fig1_features.png", "fig2_filters.png", "weights.png"):
            shutil.copyfile(os.path.join(dirs[with_figs[0]], name), os.path.join(out, name))
    return summarise(base)


# ----------------------------------------------------------------------------- the record

def figure_lines(res: dict) -> list:
    cfg = res["config"]
    return [
        f"### Figure 1: 2-D features ({cfg['fig1_epochs']} epochs, seed {cfg['seeds'][0]})", "",
        "Nearest-class-centre accuracy of the held-out 2-D features (centres from the training features): "
        "by angle (cosine to the class's mean direction) and by L1 / L2 distance to the class mean; "
        "'spread' is the mean distance to the class centre over the mean distance between centres.", "",
        table_markdown([{"network": figs.NAMES[k], "test acc": f"{f['test_acc']:.1f}",
                         "by angle": f"{100 * f['acc_by_angle']:.1f}",
                         "by L1 centre": f"{100 * f['acc_by_l1_centre']:.1f}",
                         "by L2 centre": f"{100 * f['acc_by_l2_centre']:.1f}",
                         "spread": f"{f['within_over_between']:.2f}"} for k, f in res["figure1"].items()],
                       ["network", "test acc", "by angle", "by L1 centre", "by L2 centre", "spread"]),
        "", "![Figure 1](fig1_features.png)", "", "### Figure 2: first-layer filters", "",
        "![Figure 2](fig2_filters.png)", "", "### Weight distributions (seed-0 networks, all weight layers)", "",
        table_markdown([{"weights": name, "n": w["n"], "Gaussian loglik": f"{w['gaussian']['loglik_per_weight']:.3f}",
                         "Laplace loglik": f"{w['laplace']['loglik_per_weight']:.3f}", "better fit": w["better_fit"],
                         "paper": paper}
                        for key, name, paper in (("adder", "AdderNet, trained", "Laplace"),
                                                 ("conv", "CNN, trained", "Gaussian"),
                                                 ("adder_at_init", "AdderNet, at init (N(0,1))", "-"))
                        for w in [res["weights"][key]]],
                       ["weights", "n", "Gaussian loglik", "Laplace loglik", "better fit", "paper"]),
        "", "Per layer, the better fit: " + "; ".join(
            f"{figs.NAMES[k]}: " + ", ".join(f"{n} {b}" for n, b in v.items())
            for k, v in res["weights"]["per_layer"].items()),
        "", "![weights](weights.png)", ""
    ]


def markdown(res: dict) -> str:
    cfg, a, p = res["config"], res["accuracy"], res["paper"]
    n = len(cfg["seeds"])
    lines = [f"Data: {cfg['data']}, {res['train_images']} training and {res['test_images']} held-out images; "
             f"seeds {', '.join(map(str, cfg['seeds']))}; batch {cfg['batch_size']}, lr 0.1 cosine, momentum 0.9, "
             f"wd 5e-4; {cfg['threads']} threads; torch {res['machine']['torch']}. mean ± std (sample) over {n} seeds.",
             "", f"### Accuracy: all-adder LeNet-5-BN against its CNN ({cfg['epochs']} epochs)", "",
             "'ours': test accuracy after re-estimating BatchNorm statistics over the training set for the final "
             "weights; 'as trained': with the running statistics training left, which lag the adder layers in runs "
             "this short.", "",
             table_markdown([{"network": figs.NAMES[k], "paper (MNIST, 50 epochs)": f"{p['acc'][k]}",
                              "ours (mean ± std)": fmt(a[k]["per_seed"]),
                              "per seed": ", ".join(f"{v:.1f}" for v in a[k]["per_seed"]),
                              "as trained": fmt(a[k]["running_stats_per_seed"])} for k in ("adder", "conv")],
                            ["network", "paper (MNIST, 50 epochs)", "ours (mean ± std)", "per seed", "as trained"]),
             ""]
    if "figure1" in res:
        lines += figure_lines(res)
    lines += [f"### Ablation: gradients and adaptive learning rate (all-adder LeNet-5-BN, {cfg['ablation_epochs']} epochs)",
              "", "| weight grad | input grad | eta | test acc (mean ± std) | per seed | as trained | last train loss "
              "| s/run |", "|---|---|---|---|---|---|---|---|"]
    for r in res["ablation"]:
        mark = " (paper's)" if (r["weight_grad"], r["input_grad"], r["eta"]) == ("fp", "hardtanh", 0.2) else ""
        lines.append(f"| {r['weight_grad']} | {r['input_grad']} | {r['eta'] if r['eta'] else 'off'}{mark} | "
                     f"{fmt(r['acc'])} | {', '.join(f'{v:.1f}' for v in r['acc'])} | {fmt(r['acc_running'])} | "
                     f"{np.mean(r['train_loss']):.3f} | {np.mean(r['seconds']):.0f} |")
    c = res["cycles"]
    o, ops = c["ours"], c["ops"]
    lines += ["", "'sign' gradients are the true gradients of -|X - W|, from the library's grad_mode='exact' "
              "backward (paper_mnist_grads.py); 'fp' input is the unclipped sum_o G*(W - X). "
              "'as trained': eval-mode accuracy with the running BatchNorm statistics left by training.",
              "", "### Cycles on a VIA Nano 2000 (mult 4, add 2 cycles)", "",
              "| network | operations | cycles | paper |", "|---|---|---|---|",
              f"| CNN, paper's counts | 435K mults + 435K adds | {c['paper_counts']['cnn'] / 1e6:.2f}M | 2.6M |",
              f"| AdderNet, paper's counts | 870K adds | {c['paper_counts']['adder'] / 1e6:.2f}M | 1.7M |",
              f"| CNN, ours (weight layers) | {ops['conv']['mults']:,} mults + {ops['conv']['adds']:,} adds | "
              f"{o['cnn_weight_layers'] / 1e6:.2f}M | |",
              f"| AdderNet, ours, abs not counted (the paper's way) | {ops['adder']['adds']:,} adds | "
              f"{o['adder_weight_layers_abs_free'] / 1e6:.2f}M | |",
              f"| AdderNet, ours, abs priced as an add | {ops['adder']['adds']:,} adds + {ops['adder']['abs']:,} abs | "
              f"{o['adder_weight_layers'] / 1e6:.2f}M | |",
              f"| CNN / AdderNet, whole model (BN, ReLU, pools) | | {o['cnn_whole'] / 1e6:.2f}M / "
              f"{o['adder_whole'] / 1e6:.2f}M | |", "",
              "Wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in res["wall_seconds"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    try:
        args = parse(argv)
        os.makedirs(args.out, exist_ok=True)
        res = merge(args.merge, args.out) if args.merge else run(args)
    except UserError as exc:
        print(f"paper_mnist: error: {exc}", file=sys.stderr)
        return 2
    write_json(os.path.join(args.out, "paper_mnist.json"), res)
    md = markdown(res)
    with open(os.path.join(args.out, "paper_mnist.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
