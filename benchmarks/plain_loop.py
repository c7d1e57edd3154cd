"""Issue 22: AdderNets trained in a plain PyTorch loop, evaluated in eval mode (mnist5k, CPU).

A user's loop, not ``fit``: batch 64, 3 epochs, model.eval() + accuracy after every epoch.

    study: trains on 3000 of mnist5k's 4000 training images and evaluates on the other 1000
           (100 per class): choosing the BatchNorm fix and the Adam lr scale never sees a test image.
    final: trains on all 4000, evaluates on the 1000 test images, once, with the chosen fix.

Each cell appends one JSON line to ``benchmarks/results/plain_loop_<phase>.jsonl`` (a killed run
keeps what it finished); ``--report`` turns both files into ``benchmarks/results/plain_loop.json``
and the RESULTS.md section "Plain-loop training (issue 22)".

    OMP_NUM_THREADS=1 python benchmarks/plain_loop.py --phase study --models lenet usercnn
    OMP_NUM_THREADS=1 python benchmarks/plain_loop.py --report
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import addernet
from addernet.data.embedded import load_mnist5k
from addernet.data.info import MNIST_MEAN, MNIST_STD
from addernet.machine import cpu_flags, cpu_model, cpuinfo_field
from addernet.models import get_model
from addernet.models.batchnorm import recalibrate_bn
from addernet.nn import AdderConv2d
from addernet.train.optim import adder_param_groups

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "results")
EPOCHS, BATCH = 3, 64


class UserCNN(nn.Module):
    """What a user might write: three 3x3 conv+BN+ReLU blocks with pooling and a linear head."""

    def __init__(self):
        super().__init__()
        blocks = []
        for cin, cout in ((1, 16), (16, 32), (32, 64)):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(64 * 3 * 3, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def make_model(name: str, kind: str, option: str) -> nn.Module:
    if option.startswith("lib"):  # the library as it ships, with nothing set on the model afterwards
        eta = re.fullmatch(r"lib(?:_eta([\d.]+))?", option).group(1)
        return build(name, kind, **({} if eta is None or kind == "conv" else {"eta": float(eta)}))
    # The study's options start from PyTorch's BatchNorm momentum 0.1, as the library built before
    # it made 0.5 its default for adder models (the 'lib' options measure that default).
    model = build(name, kind, bn_momentum=0.1)
    if kind == "adder" or option != "-":
        apply_option(model, option)
    return model


def build(name: str, kind: str, **kw) -> nn.Module:
    """One of the three models from ``get_model``/``convert``, ``kw`` (eta, bn_momentum) given to
    them; the CNN user model is the user's own, as written."""
    if name == "lenet":
        return get_model("lenet5_bn", kind=kind, **kw)
    if name == "resnet20":
        return get_model("resnet20", kind=kind, in_channels=1, **kw)
    if name == "usercnn":
        return UserCNN() if kind == "conv" else addernet.convert(UserCNN(), **kw)
    raise ValueError(name)


# Every option apply_option knows; an unknown one (a typo) would otherwise train uncentred silently.
OPTION = re.compile(r"(-|none|precise|center|center_absw|lib|(center_)?(all)?mom[\d.]+)(_eta[\d.]+)?")


def check_option(option: str) -> str:
    if not OPTION.fullmatch(option):
        raise ValueError(f"unknown option {option!r}: expected -, none, precise, center, center_absw, "
                         "lib, mom<m>, center_mom<m>, center_allmom<m> or allmom<m>, optionally + _eta<v>")
    return option


def apply_option(model: nn.Module, option: str) -> None:
    """The BatchNorm options of the study. 'center' (offset sum|w - mu|) is what the library does by
    default; 'center_absw' is the issue's sum|w|; 'none' turns centring off (the code before).
    An '_eta<v>' suffix ('center_eta0.5', 'center_allmom0.5_eta0.5') sets the adaptive lr scaling's
    eta to v instead of the official 0.2 on top of the option before it: SGD's step in the adder
    weights is lr * eta per element, so does a larger one close ResNet-20's 3-epoch gap? (Adam
    normalises the gradient, so eta changes nothing there.)"""
    check_option(option)
    eta = re.fullmatch(r"(.+?)_eta([\d.]+)", option)
    if eta:
        option = eta.group(1)
    for m in model.modules():
        if isinstance(m, AdderConv2d):
            m.bn_centered = option == "center" or option.startswith(("center_mom", "center_allmom"))
            if eta:
                m.eta = float(eta.group(2))
            if option == "center_absw":
                m.register_forward_hook(lambda mod, args, out: out + mod.weight.detach().abs().sum(dim=(1, 2, 3)).view(1, -1, 1, 1))
    if option == "mom0.5":
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = 0.5
    match = re.fullmatch(r"(center_)?(all)?mom([\d.]+)", option)
    if match and option != "mom0.5":  # a faster running average in the BatchNorms that read an adder
        # layer ('center_mom0.3'), or in every BatchNorm ('center_allmom0.5'; 'allmom0.5' for a CNN too)
        for bn in (adder_batchnorms(model) if not match.group(2) else
                   [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]):
            bn.momentum = float(match.group(3))


def adder_batchnorms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """The BatchNorm2d registered next after each AdderConv2d (the one that reads it, in the models
    studied here: LeNet-5-BN, ResNet-20's blocks and downsamples, the converted user CNN)."""
    out, pending = [], False
    for m in model.modules():
        if isinstance(m, (AdderConv2d, nn.Conv2d)):
            pending = isinstance(m, AdderConv2d)
        elif isinstance(m, nn.BatchNorm2d) and pending:
            out.append(m)
            pending = False
    return out


def data(phase: str, pad32: bool):
    x_tr, y_tr = load_mnist5k(train=True)
    x_te, y_te = load_mnist5k(train=False)
    if phase == "study":
        # 100 per class of the training images, fixed by seed 1, are the validation set.
        rng = np.random.default_rng(1)
        val = np.concatenate([rng.permutation(np.flatnonzero(y_tr == c))[:100] for c in range(10)])
        keep = np.setdiff1d(np.arange(len(y_tr)), val)
        x_te, y_te, x_tr, y_tr = x_tr[val], y_tr[val], x_tr[keep], y_tr[keep]

    def tensor(x):
        t = torch.from_numpy(np.ascontiguousarray(x)).float().div(255).unsqueeze(1)
        if pad32:
            t = F.pad(t, (2, 2, 2, 2))
        return (t - MNIST_MEAN[0]) / MNIST_STD[0]

    return (tensor(x_tr), torch.from_numpy(np.asarray(y_tr))), (tensor(x_te), torch.from_numpy(np.asarray(y_te)))


def make_optimizer(model: nn.Module, opt: str):
    """(optimizer, per-epoch scheduler or None). SGD as the issue's loop; Adam/AdamW at lr 1e-3
    over ``adder_param_groups`` at its default adder lr scale (or the scale in the name, 'adam_s30')."""
    match = re.fullmatch(r"(adam|adamw)(?:_s([\d.]+))?", opt)
    if opt in ("sgd", "step"):
        o = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return o, (torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.1) if opt == "step" else None)
    if match:
        scale = {"adder_lr_scale": float(match.group(2))} if match.group(2) else {}
        cls = torch.optim.Adam if match.group(1) == "adam" else torch.optim.AdamW
        return cls(adder_param_groups(model, lr=1e-3, **scale), lr=1e-3), None
    raise ValueError(opt)


@torch.no_grad()
def accuracy(model, x, y) -> float:
    model.eval()
    correct = sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(y), 500))
    return 100.0 * correct / len(y)


def batches(x, y, seed_gen, size=BATCH):
    order = torch.randperm(len(y), generator=seed_gen)
    for i in range(0, len(y), size):
        idx = order[i:i + size]
        yield x[idx], y[idx]


def precise_bn(model, train, batches_n=20):
    """A copy of ``model`` whose BatchNorm running statistics are the plain average over 20 training
    batches at its current weights. The adder layers' ``input_mean`` (the centring offset's mu) is
    held as it is, so the statistics are those of the offsets the model evaluates with."""
    true = copy.deepcopy(model)
    adders = [m for m in true.modules() if isinstance(m, AdderConv2d)]
    bns = [m for m in true.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    true.train()
    for m in adders:
        m.eval()  # forward unchanged; only the input_mean EMA is skipped
    with torch.no_grad():
        for i, (xb, _) in enumerate(batches(*train, torch.Generator().manual_seed(99))):
            if i == batches_n:
                break
            true(xb)
    for m, src in zip(bns, (m for m in model.modules() if isinstance(m, nn.BatchNorm2d))):
        m.momentum = src.momentum
    true.eval()
    return true


@torch.no_grad()
def train_mode_accuracy(model, x, y) -> float:
    """Accuracy with BatchNorm on batch statistics (batches of 64 in a fixed shuffled order), as the
    network is in training: what it has learnt, whatever its running statistics say."""
    m = copy.deepcopy(model)
    m.train()
    correct = sum(int((m(xb).argmax(1) == yb).sum()) for xb, yb in batches(x, y, torch.Generator().manual_seed(7)))
    return 100.0 * correct / len(y)


def _stage(name: str) -> str:
    return name.split(".")[0] if name.startswith("layer") else "stem/head"


def bn_diagnosis(model, train, test, stages=False) -> dict:
    """How far the running statistics are from the true ones (a precise-BN pass over 20 batches),
    per layer and as medians, and the accuracy with only the mean, or only the variance, replaced by
    the true one; with ``stages``, also with both replaced in one stage (layer1, ...) at a time."""
    true = precise_bn(model, train)
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    tbn = dict(true.named_modules())
    layers = []
    for n, m in bns:
        t = tbn[n]
        z = (m.running_mean - t.running_mean).abs() / (t.running_var + m.eps).sqrt()
        lv = (m.running_var / t.running_var).log()
        layers.append({"name": n, "mean_err_sd": z.median().item(), "mean_err_sd_max": z.max().item(),
                       "log_var_ratio": lv.median().item(), "abs_log_var_ratio": lv.abs().median().item()})
    mean_z = [r["mean_err_sd"] for r in layers]
    log_var = [r["abs_log_var_ratio"] for r in layers]
    out = {"mean_err_sd_median": statistics.median(mean_z), "mean_err_sd_max": max(mean_z),
           "abs_log_var_ratio_median": statistics.median(log_var), "abs_log_var_ratio_max": max(log_var),
           "layers": layers}

    def hybrid_acc(names, fixes):
        hybrid = copy.deepcopy(model)
        hmods = dict(hybrid.named_modules())
        for n in names:
            for fix in fixes:
                getattr(hmods[n], f"running_{fix}").copy_(getattr(tbn[n], f"running_{fix}"))
        return accuracy(hybrid, *test)

    names = [n for n, _ in bns]
    for fix in ("mean", "var"):
        out[f"acc_true_{fix}_only"] = hybrid_acc(names, (fix,))
    out["acc_precise_bn"] = accuracy(true, *test)
    out["acc_train_mode_bn"] = train_mode_accuracy(model, *test)
    if stages:
        for st in dict.fromkeys(_stage(n) for n in names):
            out[f"acc_true_stats_in_{st}"] = hybrid_acc([n for n in names if _stage(n) == st], ("mean", "var"))
    return out


def run_cell(phase, model_name, kind, option, opt, seed, diagnose=False) -> dict:
    torch.manual_seed(seed)
    train, test = data(phase, pad32=model_name == "resnet20")
    model = make_model(model_name, kind, option)
    optimizer, sched = make_optimizer(model, opt)
    gen = torch.Generator().manual_seed(seed)
    accs, losses, diags, diag_seconds = [], [], [], 0.0
    t0 = time.time()
    for _epoch in range(EPOCHS):
        model.train()
        total, n = 0.0, 0
        for xb, yb in batches(*train, gen):
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(yb)
            n += len(yb)
        if sched is not None:
            sched.step()
        losses.append(total / n)
        if option == "precise" and kind == "adder":
            recalibrate_bn(model, batches(*train, torch.Generator().manual_seed(99)), batches=20)
        accs.append(accuracy(model, *test))
        if diagnose == "epoch":
            t_diag = time.time()
            diags.append(bn_diagnosis(model, train, test, stages=_epoch == EPOCHS - 1))
            diag_seconds += time.time() - t_diag
    row = {"phase": phase, "model": model_name, "kind": kind, "option": option,
           "opt": opt, "seed": seed, "centering": "sum|w-mu|", "acc": accs, "train_loss": losses, "seconds": round(time.time() - t0 - diag_seconds, 1)}
    row["machine"] = machine()  # the sessions' boxes differ (AVX-512 or AVX2 only)
    if opt.startswith("adam"):  # the adder weights' lr over the rest: the default changed (100, then 300)
        row["adder_lr_scale"] = max(g["lr"] for g in optimizer.param_groups) / 1e-3
    if diagnose == "epoch":  # "seconds" above leaves the diagnosis out
        row["bn_epochs"], row["bn"], row["diag_seconds"] = diags, diags[-1], round(diag_seconds, 1)
    elif diagnose and kind == "adder":
        row["bn"] = bn_diagnosis(model, train, test)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=("study", "final"), default="study")
    p.add_argument("--models", nargs="+", default=["lenet", "usercnn", "resnet20"])
    p.add_argument("--kinds", nargs="+", default=["adder", "conv"])
    p.add_argument("--options", nargs="+", default=["center"])
    p.add_argument("--conv-options", nargs="+", default=["-"],
                   help="BN options for the CNN twins: '-' (none, the twin as it is) or 'allmom<m>'")
    p.add_argument("--opts", nargs="+", default=["sgd", "step", "adam", "adamw"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--diagnose", nargs="?", const="end", choices=("end", "epoch"),
                   help="also measure running vs true BN statistics: after the last epoch (adder models), "
                        "or 'epoch': after every epoch, with train-mode-BN accuracy and per-stage restores (both kinds)")
    p.add_argument("--report", action="store_true", help="write plain_loop.json and the RESULTS.md section")
    args = p.parse_args(argv)
    for option in args.options + args.conv_options:
        try:
            check_option(option)
        except ValueError as e:
            p.error(str(e))  # one line and exit 2, before any cell trains
    torch.set_num_threads(1)
    if args.report:
        return report()
    os.makedirs(OUT, exist_ok=True)
    cells = []
    for model_name in args.models:
        for kind in args.kinds:
            for option in (args.options if kind == "adder" else args.conv_options):
                for opt in args.opts:
                    for seed in args.seeds:
                        cells.append((model_name, kind, option, opt, seed))
    path = os.path.join(OUT, f"plain_loop_{args.phase}.jsonl")
    for cell in tqdm(cells, desc="plain loop", file=sys.stdout, mininterval=0):
        row = run_cell(args.phase, *cell, diagnose=args.diagnose)
        print(json.dumps(row), flush=True)
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def _rows(phase):
    path = os.path.join(OUT, f"plain_loop_{phase}.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def report():
    sys.path.insert(0, HERE)
    from plain_loop_report import write_report  # beside this file
    write_report(_rows("study"), _rows("final"), OUT, os.path.join(HERE, "RESULTS.md"),
                 machine=f"torch {torch.__version__}, one thread per process")


def machine() -> str:
    """'AMD EPYC (family 25, model 1; AVX2, no AVX-512), 2 cores': the CPU a row ran on."""
    flags = cpu_flags()
    simd = "AVX-512" if "avx512f" in flags else ("AVX2, no AVX-512" if "avx2" in flags else "no AVX2")
    return (f"{cpu_model()} (family {cpuinfo_field('cpu family') or '?'}, model {cpuinfo_field('model') or '?'}; "
            f"{simd}), {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
