"""Times the IGAM-style student step: CE plus an input-gradient loss taken with create_graph=True.

    python benchmarks/bench_grad2.py                  # LeNet-5-BN and a ResNet-20 layer, batch 64
    python benchmarks/bench_grad2.py --json out.json  # also write the medians

One step is: ce = CE(model(x), y); gx = d ce / dx (create_graph=True); (ce + ||gx||^2).backward().
It runs the adder model on the native and the reference backends and its CNN twin (nn.Conv2d in
place of every adder layer), interleaved in one process with the thread count fixed; medians and
ratios are reported, since absolute times on a shared machine say little.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

import addernet
from addernet.cli_info import cpu_model


def student_step(model, x, y):
    x = x.detach().requires_grad_()
    ce = F.cross_entropy(model(x), y)
    gx, = torch.autograd.grad(ce, x, create_graph=True)
    loss = ce + gx.pow(2).sum()
    model.zero_grad(set_to_none=True)
    loss.backward()


class ResNet20Layer(nn.Module):
    """One 16-channel 3x3 layer of ResNet-20's first stage, with BN, ReLU and a linear head."""

    def __init__(self, kind: str):
        super().__init__()
        conv = addernet.AdderConv2d if kind == "adder" else nn.Conv2d
        self.conv = conv(16, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))


def cases(batch: int):
    gen = torch.Generator().manual_seed(0)
    lenet_x = torch.randn(batch, 1, 28, 28, generator=gen)
    layer_x = torch.randn(batch, 16, 32, 32, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    return {
        "lenet5_bn": (lambda kind: addernet.models.lenet5_bn(kind=kind), lenet_x, y),
        "resnet20_layer16": (ResNet20Layer, layer_x, y),
    }


def time_case(build, x, y, reps: int, reference_reps: int):
    variants = {
        "native": (build("adder"), "native"),
        "cnn": (build("conv"), None),
        "reference": (build("adder"), "reference"),
    }
    times = {k: [] for k in variants}
    for name, (model, backend) in variants.items():  # warm-up
        with addernet.backends.use_backend(backend or "native"):
            student_step(model, x, y)
    names = list(variants)
    for r in range(reps):
        for name in names[r % 3:] + names[:r % 3]:  # the order rotates each round
            model, backend = variants[name]
            if name == "reference" and r >= reference_reps:
                continue
            with addernet.backends.use_backend(backend or "native"):
                t0 = time.perf_counter()
                student_step(model, x, y)
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--reference-reps", type=int, default=3, help="the reference backend is slow")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if "native" not in addernet.backends.available():
        print("bench_grad2: the native extension is not built", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    results = {}
    for name, (build, x, y) in cases(args.batch).items():
        med = time_case(build, x, y, args.reps, args.reference_reps)
        results[name] = med
        print(f"{name:18s} native {med['native'] * 1e3:8.1f} ms  cnn {med['cnn'] * 1e3:8.1f} ms  "
              f"reference {med['reference'] * 1e3:9.1f} ms  native/cnn {med['native'] / med['cnn']:5.2f}x  "
              f"reference/native {med['reference'] / med['native']:6.1f}x", flush=True)
    meta = dict(cpu=cpu_model(), native=torch.ops.addernet._cpu_info(), threads=args.threads,
                batch=args.batch, torch=torch.__version__, reps=args.reps,
                reference_reps=args.reference_reps, loadavg=os.getloadavg()[0])
    print(meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, median_s=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
