"""Times the IGAM-style student step: CE plus an input-gradient loss taken with create_graph=True.

    python benchmarks/bench_grad2.py                  # LeNet-5-BN and a ResNet-20 layer, batch 64
    python benchmarks/bench_grad2.py --json out.json  # also write the medians
    python benchmarks/bench_grad2.py --threads 1 --cpu-time   # on a shared machine

One step is: ce = CE(model(x), y); gx = d ce / dx (create_graph=True); (ce + ||gx||^2).backward().
It runs the adder model on the native and the reference backends and its CNN twin (nn.Conv2d in
place of every adder layer), interleaved in one process with the thread count fixed; medians and
ratios are reported, since absolute times on a shared machine say little. On a loaded machine
wall time at 2 threads mostly measures the scheduler (every parallel region waits for its slowest
thread); --cpu-time with --threads 1 times the process's CPU time instead.
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
from addernet.machine import cpu_model


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


# The adder layers alone (input, weight, padding): LeNet-5-BN's three and a ResNet-20 stage-1 layer.
OP_SHAPES = {
    "lenet conv2 6->16 5x5 @14": ((6, 14, 14), (16, 6, 5, 5), 0),
    "lenet fc1 16->120 5x5 @5": ((16, 5, 5), (120, 16, 5, 5), 0),
    "lenet fc2 120->84 1x1 @1": ((120, 1, 1), (84, 120, 1, 1), 0),
    "resnet20 16->16 3x3 @32": ((16, 32, 32), (16, 16, 3, 3), 1),
}


def op_step(x, w, padding, backend):
    """The adder op's part of the student step: its first-order input gradient with
    create_graph=True, then the backward of a loss on it (second order)."""
    x = x.detach().requires_grad_()
    y = addernet.functional.adder_conv2d(x, w, padding=padding, backend=backend)
    gx, = torch.autograd.grad(y.sum(), x, create_graph=True)
    w.grad = None
    (y.pow(2).mean() + gx.pow(2).sum()).backward()


# The clock: time.perf_counter (wall), or time.process_time (--cpu-time).
clock = time.perf_counter


def time_ops(batch: int, reps: int, reference_reps: int):
    gen = torch.Generator().manual_seed(0)
    out = {}
    for name, (xs, ws, pad) in OP_SHAPES.items():
        x = torch.randn(batch, *xs, generator=gen)
        w = torch.randn(*ws, generator=gen).requires_grad_()
        times = {"native": [], "reference": []}
        for backend in times:
            op_step(x, w, pad, backend)
        for r in range(reps):
            for backend in (("native", "reference") if r % 2 == 0 else ("reference", "native")):
                if backend == "reference" and r >= reference_reps:
                    continue
                t0 = clock()
                op_step(x, w, pad, backend)
                times[backend].append(clock() - t0)
        out[name] = {k: statistics.median(v) for k, v in times.items()}
        med = out[name]
        print(f"op {name:28s} native {med['native'] * 1e3:8.2f} ms  reference {med['reference'] * 1e3:9.2f} ms  "
              f"reference/native {med['reference'] / med['native']:6.1f}x", flush=True)
    return out


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
                t0 = clock()
                student_step(model, x, y)
                times[name].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--reference-reps", type=int, default=3, help="the reference backend is slow")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the process's CPU time, not wall time (use with --threads 1 on a shared machine)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    for name in ("batch", "threads", "reps", "reference_reps"):
        if getattr(args, name) < 1:
            print(f"bench_grad2: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    global clock
    clock = time.process_time if args.cpu_time else time.perf_counter
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
    results["ops"] = time_ops(args.batch, args.reps, args.reference_reps)
    meta = dict(cpu=cpu_model(), native=torch.ops.addernet._cpu_info(), threads=args.threads,
                batch=args.batch, torch=torch.__version__, reps=args.reps,
                reference_reps=args.reference_reps, loadavg=os.getloadavg()[0],
                clock="cpu" if args.cpu_time else "wall")
    print(meta)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, median_s=results), f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
