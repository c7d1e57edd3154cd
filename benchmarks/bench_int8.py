"""Integer adder inference: speed of the uint8 op and of quantised models, and int8 accuracy.

    python benchmarks/bench_int8.py ops      [--repeats 15] [--json out.json]   # op table
    python benchmarks/bench_int8.py models   [--repeats 10] [--json out.json]   # whole models
    python benchmarks/bench_int8.py accuracy [--seeds 0 1 2] [--json out.json]  # mnist5k, int8 vs float32
    python benchmarks/bench_int8.py official --checkpoint ResNet20-AdderNet.pth --data-root CIFAR_DIR
                                              # an official CIFAR-10 checkpoint, float32 vs int8 accuracy

Timings are ratios to float32 F.conv2d (or the float32 CNN) measured in one process, interleaved
(each repeat times every contender once, in turn), medians; 2 threads unless --threads. The CPU's
flags and the ISA the adder kernels ran are printed with every table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import addernet  # noqa: E402
from addernet.quant import quantize_tensor, shared_qparams  # noqa: E402

# The op shapes of benchmarks/bench_ops.py: (name, N, C, H, O, k, stride, padding).
SHAPES = [
    ("ResNet-20 16@32", 32, 16, 32, 16, 3, 1, 1),
    ("ResNet-20 32@16", 32, 32, 16, 32, 3, 1, 1),
    ("ResNet-20 64@8", 32, 64, 8, 64, 3, 1, 1),
    ("ResNet-20 64@8, batch 128", 128, 64, 8, 64, 3, 1, 1),
    ("ResNet-18 64@56", 8, 64, 56, 64, 3, 1, 1),
    ("ResNet-18 128@28", 8, 128, 28, 128, 3, 1, 1),
    ("ResNet-18 256@14", 8, 256, 14, 256, 3, 1, 1),
    ("ResNet-18 512@7", 8, 512, 7, 512, 3, 1, 1),
    ("LeNet 6->16 5x5", 64, 6, 14, 16, 5, 1, 0),
    ("LeNet 16->120 5x5", 64, 16, 5, 120, 5, 1, 0),
]


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    keep = sorted(f for f in flags if f.startswith("avx") or f in ("fma", "sse4_2", "vnni"))
    return f"{model}; flags: {' '.join(keep)}"


# --clock thread: CPU time of the calling thread (with 1 thread), which a box shared by other jobs
# disturbs far less than wall time: a descheduled OpenMP thread stalls oneDNN's barrier in wall time.
CLOCK = time.perf_counter


def timed_medians(fns: dict, repeats: int, warmup: int = 2) -> dict:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = CLOCK()
            fn()
            times[k].append(CLOCK() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _x86_qconv(x, w, stride, padding):
    """PyTorch's own int8 convolution (the x86 engine), or None where it is missing."""
    try:
        torch.backends.quantized.engine = "x86"
        qx = torch.quantize_per_tensor(x, 0.05, 64, torch.quint8)
        qw = torch.quantize_per_channel(w, torch.full((w.shape[0],), 0.01), torch.zeros(w.shape[0], dtype=torch.long),
                                        0, torch.qint8)
        packed = torch.ops.quantized.conv2d_prepack(qw, None, [stride] * 2, [padding] * 2, [1, 1], 1)
        fn = lambda: torch.ops.quantized.conv2d(qx, packed, 0.1, 64)  # noqa: E731
        fn()
        return fn
    except Exception as exc:  # noqa: BLE001  (an engine missing from this torch build)
        print(f"(x86 quantized conv unavailable: {type(exc).__name__}: {exc})", file=sys.stderr)
        return None


def bench_ops(repeats: int) -> list[dict]:
    rows = []
    for name, n, c, h, o, k, s, p in SHAPES:
        torch.manual_seed(0)
        x = torch.rand(n, c, h, h)
        w = torch.randn(o, c, k, k) * 0.5
        sc, zp = shared_qparams(min(0.0, w.min().item()), max(1.0, w.max().item()))
        # Weights channels last, as QuantAdderConv2d stores them (the op then packs them by copies).
        qx, qw = quantize_tensor(x, sc, zp), quantize_tensor(w, sc, zp).contiguous(memory_format=torch.channels_last)
        scale, shift = torch.full((o,), sc), torch.zeros(o)
        conf = ([s, s], [p, p], [1, 1], 1)
        fns = {
            "conv_f32": lambda: F.conv2d(x, w, stride=s, padding=p),
            "adder_f32": lambda: torch.ops.addernet.adder_conv2d(x, w, *conf),
            # uint8 in, float out (the dequantising epilogue) and uint8 in, uint8 out (requantising)
            "adder_u8": lambda: torch.ops.addernet.adder_conv2d_u8(qx, qw, zp, scale, shift, *conf, True),
            "adder_u8_requant": lambda: torch.ops.addernet.adder_conv2d_u8(qx, qw, zp, scale, shift, *conf, True,
                                                                           0.05, 0),
            "adder_u8_from_f32": lambda: torch.ops.addernet.adder_conv2d_u8(x, qw, zp, scale, shift, *conf, True,
                                                                            input_scale=sc),
        }
        q = _x86_qconv(x, w, s, p)
        if q is not None:
            fns["torch_int8_x86"] = q
        with torch.no_grad():
            t = timed_medians(fns, repeats)
        oh = (h + 2 * p - k) // s + 1
        # taps (|x - w| or x * w) of the layer, for its distance to the floor (benchmarks/floor/micro_floor_u8.cpp)
        row = {"layer": name, "taps": n * o * oh * oh * c * k * k, "conv_f32_ms": 1e3 * t["conv_f32"]}
        row.update({f"{k}_ms": 1e3 * v for k, v in t.items() if k != "conv_f32"})
        row.update({f"{k}_ratio": t[k] / t["conv_f32"] for k in t if k != "conv_f32"})
        rows.append(row)
        print(f"{name:28s} " + " ".join(f"{k}={v:.2f}" for k, v in row.items() if k.endswith("ratio")), flush=True)
    return rows


def _calib(shape, batches=4, n=16):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(n, *shape, generator=g).clamp(-2, 2) for _ in range(batches)]


def _warm_bn(model, shape):
    # Random weights give BatchNorms with no statistics; passes in train mode set them (cumulative
    # averages: with the default momentum two batches leave an adder layer's BatchNorm near its
    # initial mean 0, and every ReLU after it outputs zeros).
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in _calib(shape, batches=2):
            model(x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


def bench_models(repeats: int, archs=("resnet20", "resnet18"), adder_only: bool = True) -> list[dict]:
    """Every column of the whole-model table, timed interleaved in this process: the float32 CNN
    (eager, and compiled with freezing), torch's int8 CNN (FX x86 and PT2E + compile with
    freezing), the float32 AdderNet (BN folded) and the int8 AdderNet (PT2E whole graph, compiled;
    and the adder-only mode, eager). All int8 models use the same calibration batches."""
    from addernet.bench.int8 import cnn_int8_fx, cnn_int8_pt2e
    from addernet.quant.pt2e import compile_frozen
    from addernet.models import get_model

    configs = {"resnet20": (32, (3, 32, 32)), "resnet18": (8, (3, 224, 224))}
    rows = []
    for arch in archs:
        batch, shape = configs[arch]
        torch.manual_seed(0)
        cnn = _warm_bn(get_model(arch, num_classes=10, kind="conv"), shape)
        adder = _warm_bn(get_model(arch, num_classes=10, kind="adder"), shape)
        x = torch.randn(batch, *shape)
        calib = _calib(shape)
        fused = addernet.fuse(adder, example_input=x)
        models = {"cnn_f32": cnn, "cnn_f32_compiled": compile_frozen(cnn, x), "cnn_int8_fx": cnn_int8_fx(cnn, calib, x),
                  "cnn_int8_pt2e": cnn_int8_pt2e(cnn, calib, x), "adder_f32_fused": fused}
        qp = addernet.quantize(adder, calib, example_input=x)
        models["adder_int8_pt2e"] = compile_frozen(qp, x)
        if adder_only:
            models["adder_int8_adder_only"] = addernet.quantize(adder, calib, mode="adder")
        fns = {k: (lambda m=m: m(x)) for k, m in models.items()}
        print(f"{arch}: timing {', '.join(fns)}", file=sys.stderr, flush=True)
        with torch.no_grad():
            t = timed_medians(fns, repeats)
        row = {"model": f"{arch} batch {batch}", "cnn_f32_ms": 1e3 * t["cnn_f32"]}
        row.update({f"{k}_ms": 1e3 * v for k, v in t.items() if k != "cnn_f32"})
        best = min(t["cnn_int8_fx"], t["cnn_int8_pt2e"])
        row["adder_int8_pt2e_vs_best_int8_cnn"] = t["adder_int8_pt2e"] / best
        if adder_only:
            row["adder_int8_adder_only_vs_best_int8_cnn"] = t["adder_int8_adder_only"] / best
        row["adder_layers_lowered"] = len(qp.quantized_layers)
        rows.append(row)
        print(row, flush=True)
    return rows


# ------------------------------------------------------------------------------------- accuracy

def _mnist5k_tensors(pad_to_32: bool):
    from addernet.data import get_dataset

    out = []
    for train in (True, False):
        ds = get_dataset("mnist5k", train=train, augment=False)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
        if pad_to_32:
            x = F.pad(x, (2, 2, 2, 2))
        out.append(torch.utils.data.TensorDataset(x, y))
    return out


def _train(arch: str, kind: str, seed: int, epochs: int, train_set, progress: bool):
    from addernet.models import get_model
    from addernet.train import build_optimizer, train_one_epoch

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(train_set, batch_size=64, shuffle=True, generator=g)
    model = get_model(arch, num_classes=10, kind=kind, in_channels=1)
    opt = build_optimizer(model, lr=0.1)
    total = epochs * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))
    for _ in range(epochs):
        train_one_epoch(model, train, opt, sched, "cpu", progress=progress)
    return model.eval()


def train_and_quantize(arch: str, seed: int, epochs: int, progress: bool, cnn: bool = True) -> dict:
    """The AdderNet's float32 and int8 accuracy (the default whole-graph PT2E mode, and the
    adder-only mode with its options), and, trained the same way and calibrated on the same
    batches, the CNN's float32 and torch's PT2E int8 (X86InductorQuantizer)."""
    from addernet.train import evaluate

    train_set, test_set = _mnist5k_tensors(pad_to_32=arch == "resnet20")
    test = torch.utils.data.DataLoader(test_set, batch_size=250)
    t0 = time.time()
    model = _train(arch, "adder", seed, epochs, train_set, progress)
    train_s = time.time() - t0
    calib = list(torch.utils.data.DataLoader(train_set, batch_size=128, shuffle=True,
                                             generator=torch.Generator().manual_seed(1)))[:8]
    row = {"arch": arch, "seed": seed, "epochs": epochs, "train_s": train_s, "float32": evaluate(model, test, "cpu")["acc"]}
    for label, kw in (("int8", {}), ("int8_adder_only", dict(mode="adder")),
                      ("int8_adder_only_groups4", dict(mode="adder", filter_groups=4)),
                      ("int8_adder_only_noclamp", dict(mode="adder", weight_clamp=False))):
        q = addernet.quantize(model, calib, batches=8, **kw)
        row[label] = evaluate(q, test, "cpu")["acc"]
    if cnn:
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

        from addernet.quant.pt2e import x86_quantization_config

        conv = _train(arch, "conv", seed, epochs, train_set, progress)
        row["cnn_float32"] = evaluate(conv, test, "cpu")["acc"]
        quantizer = X86InductorQuantizer().set_global(x86_quantization_config())
        qc = addernet.quant.quantize_pt2e(conv, calib, batches=8, quantizer=quantizer, lower=False, guard=False)
        row["cnn_int8_pt2e"] = evaluate(qc, test, "cpu")["acc"]
    print(row, flush=True)
    return row


def official_accuracy(checkpoint: str, arch: str, data_root: str, batches: int, progress: bool) -> list[dict]:
    from addernet.data import make_loaders
    from addernet.models import load_official
    from addernet.train import evaluate

    model = load_official(checkpoint, arch).eval()
    train, test, _ = make_loaders("cifar10", data_root, batch_size=256, augment=False)
    row = {"checkpoint": checkpoint, "arch": arch, "float32": evaluate(model, test, "cpu")["acc"]}
    for label, kw in (("int8", {}), ("int8_groups4", dict(filter_groups=4))):
        row[label] = evaluate(addernet.quantize(model, train, batches=batches, progress=progress, **kw), test, "cpu")["acc"]
    print(row, flush=True)
    return [row]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ops", "models", "accuracy", "official"])
    ap.add_argument("--checkpoint", help="official: an official AdderNet checkpoint (load_official)")
    ap.add_argument("--arch", default="resnet20", help="official: its architecture")
    ap.add_argument("--data-root", help="official: the CIFAR-10 python batches")
    ap.add_argument("--calib-batches", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--archs", nargs="+", default=["lenet5_bn", "resnet20"])
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet18"], choices=["resnet20", "resnet18"],
                    help="models: which architectures")
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 3], help="per arch, in --archs order")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="thread: the calling thread's CPU time, 1 thread (robust on a shared box)")
    ap.add_argument("--json")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.what == "official" and not (args.checkpoint and args.data_root):
        ap.error("official needs --checkpoint and --data-root")
    if args.clock == "thread":
        global CLOCK
        CLOCK = time.thread_time
        args.threads = 1
    torch.set_num_threads(args.threads)
    info = {"clock": args.clock, "cpu": cpu_flags(), "threads": torch.get_num_threads(), "kernels": torch.ops.addernet._cpu_info(),
            "u8_kernels": torch.ops.addernet._u8_info(),
            "isa_forced": os.environ.get("ADDERNET_CPU_ISA", ""), "u8_vector_forced": os.environ.get("ADDERNET_U8_VECTOR", "")}
    print(info, flush=True)
    if args.what == "ops":
        rows = bench_ops(args.repeats)
    elif args.what == "models":
        rows = bench_models(args.repeats, args.models)
    elif args.what == "official":
        rows = official_accuracy(args.checkpoint, args.arch, args.data_root, args.calib_batches,
                                 not args.no_progress and sys.stderr.isatty())
    else:
        progress = not args.no_progress and sys.stderr.isatty()
        rows = [train_and_quantize(a, s, e, progress) for a, e in zip(args.archs, args.epochs) for s in args.seeds]
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
