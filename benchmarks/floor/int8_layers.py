"""Layer by layer: the int8 AdderNet's uint8 adder ops against torch's int8 convolutions at the same
place, and each against its floor (benchmarks/floor/micro_floor_u8.cpp's G taps/s).

    python benchmarks/floor/int8_layers.py --sad-floor 195 --amx-floor 2634 --json out.json

The adder ops are timed one by one (CPU time of this thread, 1 thread, median of --repeats) inside
the PT2E graph of ResNet-20 (batch 32); torch's int8 convolutions are timed by oneDNN itself
(ONEDNN_VERBOSE's exec times, in a child process running the compiled PT2E CNN), which also says
which implementation ran (AMX or VNNI).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import fx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import addernet  # noqa: E402
from bench_int8 import _calib, _warm_bn  # noqa: E402


def adder_layers(repeats: int) -> list[dict]:
    from addernet.models import get_model

    torch.manual_seed(0)
    adder = _warm_bn(get_model("resnet20", num_classes=10, kind="adder"), (3, 32, 32))
    x = torch.randn(32, 3, 32, 32)
    q = addernet.quantize(adder, _calib((3, 32, 32)), example_input=x)
    rows = []

    class Timed(fx.Interpreter):
        def call_function(self, target, args, kwargs):
            if target != torch.ops.addernet.adder_conv2d_u8.default:
                return super().call_function(target, args, kwargs)
            ts = []
            for _ in range(repeats):
                t = time.thread_time()
                out = target(*args, **kwargs)
                ts.append(time.thread_time() - t)
            xin, w = args[0], args[1]
            n, c, h, _ = xin.shape
            o, _, k, _ = w.shape
            oh = out.shape[2]
            rows.append({"layer": f"{c}->{o} {k}x{k} s{args[5][0]} @{h}", "taps": n * o * oh * oh * c * k * k,
                         "adder_u8_ms": 1e3 * statistics.median(ts), "out": str(out.dtype)})
            return out

    with torch.no_grad():
        Timed(q).run(x)
    return rows


def cnn_layers() -> list[dict]:
    """oneDNN's own exec times of the compiled PT2E CNN's convolutions (a child process, since
    ONEDNN_VERBOSE is read at start)."""
    code = ("import sys, torch; sys.path.insert(0, 'benchmarks'); torch.set_num_threads(1)\n"
            "from bench_int8 import _calib, _warm_bn\n"
            "from addernet.bench.int8 import cnn_int8_pt2e\nfrom addernet.models import get_model\n"
            "torch.manual_seed(0)\ncnn = _warm_bn(get_model('resnet20', num_classes=10, kind='conv'), (3, 32, 32))\n"
            "x = torch.randn(32, 3, 32, 32)\nm = cnn_int8_pt2e(cnn, _calib((3, 32, 32)), x)\n"
            "print('TIMING', flush=True)\n"
            "with torch.no_grad():\n    for _ in range(5): m(x)\n")
    env = dict(os.environ, ONEDNN_VERBOSE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    out = out.split("TIMING", 1)[1]
    per: dict[str, list[float]] = {}
    impl = {}
    for line in out.splitlines():
        f = line.split(",")
        if len(f) > 10 and f[0] == "onednn_verbose" and f[3] == "exec" and f[5] == "convolution":
            per.setdefault(f[-2], []).append(float(f[-1]))
            impl[f[-2]] = f[6]
    return [{"shape": k, "impl": impl[k], "torch_int8_ms": statistics.median(v), "calls": len(v)} for k, v in per.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sad-floor", type=float, required=True, help="G taps/s of vpsadbw (micro_floor_u8)")
    ap.add_argument("--amx-floor", type=float, required=True, help="G taps/s of AMX tdpbusd (micro_floor_u8)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows = adder_layers(args.repeats)
    for r in rows:
        r["adder_floor_ms"] = r["taps"] / (args.sad_floor * 1e9) * 1e3
        r["adder_vs_floor"] = r["adder_u8_ms"] / r["adder_floor_ms"]
        r["amx_floor_ms"] = r["taps"] / (args.amx_floor * 1e9) * 1e3
        print(r, flush=True)
    convs = cnn_layers()
    for c in convs:
        print(c, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"adder": rows, "cnn": convs, "sad_floor": args.sad_floor, "amx_floor": args.amx_floor}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
