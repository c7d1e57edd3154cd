"""GPU check of the adder convolution: correctness of the native CUDA ops, then timings.

    python benchmarks/bench_gpu.py --out OUT [--budget-s 150] [--skip-bench] [--skip-correctness]

Correctness: per dtype (float32, float16, bfloat16) fresh random inputs on small shapes that
reach every kernel tile configuration; forward, fused, backward (both weight-gradient routes,
ADDERNET_CUDA_WGRAD=kernel|cudnn) and the output masks, against a float64 CPU evaluation of the
definitions. The caching allocator is poisoned with NaN before each call, so an output element a
kernel forgets to write shows up.

Timings: ResNet-20 (CIFAR, batch 256) and ResNet-18 (ImageNet, batch 64) layer shapes, forward
and forward+backward, for the native CUDA op, Triton (when available), the unfold reference
(when it fits), torch.cdist(p=1) on unfolded patches (forward) and cuDNN F.conv2d with TF32 off
and on. Repetitions are interleaved across the contenders of a case and the median is kept;
ratios are against cuDNN with TF32 off. Writes OUT/gpu_results.json and OUT/gpu_results.md.
Exit status: 0 when every correctness check passed and every contender ran or was skipped
for a stated reason, 1 otherwise, 2 without a GPU.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

WGRAD_ENV = "ADDERNET_CUDA_WGRAD"


@dataclass(frozen=True)
class Conv:
    net: str
    name: str
    n: int
    c: int
    h: int
    w: int
    o: int
    k: int
    stride: int = 1
    pad: int = 0
    dilation: int = 1
    groups: int = 1

    @property
    def out_hw(self):
        reach = self.dilation * (self.k - 1) + 1
        return ((self.h + 2 * self.pad - reach) // self.stride + 1,
                (self.w + 2 * self.pad - reach) // self.stride + 1)

    def args(self):
        return (self.stride, self.stride), (self.pad, self.pad), (self.dilation, self.dilation), self.groups


BENCH_SHAPES = [
    Conv("resnet20", "16@32 3x3", 256, 16, 32, 32, 16, 3, 1, 1),
    Conv("resnet20", "16->32@32 3x3 s2", 256, 16, 32, 32, 32, 3, 2, 1),
    Conv("resnet20", "16->32@32 1x1 s2", 256, 16, 32, 32, 32, 1, 2, 0),
    Conv("resnet20", "32@16 3x3", 256, 32, 16, 16, 32, 3, 1, 1),
    Conv("resnet20", "32->64@16 3x3 s2", 256, 32, 16, 16, 64, 3, 2, 1),
    Conv("resnet20", "32->64@16 1x1 s2", 256, 32, 16, 16, 64, 1, 2, 0),
    Conv("resnet20", "64@8 3x3", 256, 64, 8, 8, 64, 3, 1, 1),
    Conv("resnet18", "64@56 3x3", 64, 64, 56, 56, 64, 3, 1, 1),
    Conv("resnet18", "128@28 3x3", 64, 128, 28, 28, 128, 3, 1, 1),
    Conv("resnet18", "256@14 3x3", 64, 256, 14, 14, 256, 3, 1, 1),
    Conv("resnet18", "512@7 3x3", 64, 512, 7, 7, 512, 3, 1, 1),
]

# Small shapes for the correctness pass; channel counts pick each tile configuration.
CHECK_SHAPES = [
    Conv("check", "direct og<=4", 2, 3, 7, 6, 4, 3, 1, 1),
    Conv("check", "depthwise s2", 2, 6, 9, 8, 6, 3, 2, 1, groups=6),
    Conv("check", "tiny 3x3", 3, 16, 8, 8, 16, 3, 1, 1),
    Conv("check", "rgb 5x5 s2", 2, 3, 11, 13, 12, 5, 2, 2),
    Conv("check", "small s2", 2, 16, 9, 9, 32, 3, 2, 1),
    Conv("check", "1x1 s2", 2, 32, 8, 8, 24, 1, 2, 0),
    Conv("check", "dilated", 2, 40, 9, 9, 48, 3, 1, 2, dilation=2),
    Conv("check", "grouped", 2, 64, 6, 6, 64, 3, 1, 1, groups=2),
    Conv("check", "large", 2, 72, 5, 5, 136, 3, 1, 1),
    Conv("check", "large cin", 2, 136, 4, 3, 40, 1, 1, 0),
    Conv("check", "batch 9", 9, 8, 10, 10, 20, 3, 1, 0),
]

# Error allowed relative to the sum of |terms| of each output element.
TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


@contextlib.contextmanager
def env(name, value):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def set_conv_tf32(on: bool) -> None:
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


# ---------------------------------------------------------------------------------------------
# float64 definition


def reference64(x, w, g, scale, shift, s: Conv):
    """Forward, its |terms| sum, gradients and their |terms| sums, in float64 on the CPU."""
    x, w, g = x.double().cpu(), w.double().cpu(), g.double().cpu()
    stride, padding, dilation, groups = s.args()
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = s.out_hw
    k = cg * kh * kw
    cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    cols = cols.view(n, groups, 1, k, oh * ow)
    wg = w.view(1, groups, o // groups, k, 1)
    diff = cols - wg
    y = -diff.abs().sum(3).reshape(n, o, oh, ow)
    y_scale = -y
    gc = g.reshape(n, groups, o // groups, 1, oh * ow)
    gw = (gc * diff).sum((0, 4)).reshape(w.shape)
    # Bounds both evaluation orders: sum G*(X-W) directly, or sum G*X - W*sum G (cuDNN route).
    gw_scale = (gc.abs() * (cols.abs() + wg.abs())).sum((0, 4)).reshape(w.shape)
    ht = (wg - cols).clamp(-1, 1)
    fold = dict(output_size=(h, wd), kernel_size=(kh, kw), dilation=dilation, padding=padding, stride=stride)
    gi = F.fold((gc * ht).sum(2).reshape(n, c * kh * kw, oh * ow), **fold)
    gi_scale = F.fold((gc.abs() * ht.abs()).sum(2).reshape(n, c * kh * kw, oh * ow), **fold)
    sc, sf = scale.double().cpu().view(1, -1, 1, 1), shift.double().cpu().view(1, -1, 1, 1)
    fused = (sc * y + sf).clamp_min(0)
    fused_scale = sc.abs() * y_scale + sf.abs()
    return dict(y=(y, y_scale), fused=(fused, fused_scale), gi=(gi, gi_scale), gw=(gw, gw_scale))


def poison(*shapes_dtypes):
    """Leaves NaN-filled blocks of these sizes in the caching allocator for the next op."""
    blocks = [torch.full(shape, float("nan"), dtype=dt, device="cuda") for shape, dt in shapes_dtypes]
    torch.cuda.synchronize()
    del blocks


def compare(got, want, dtype):
    want_v, scale = want
    got64 = got.detach().double().cpu()
    if got64.shape != want_v.shape:
        return False, f"shape {tuple(got64.shape)} != {tuple(want_v.shape)}"
    err = (got64 - want_v).abs()
    allowed = TOLERANCE[dtype] * (scale + want_v.abs()) + 1e-6
    bad = ~(err <= allowed)  # NaN counts as bad
    if bool(bad.any()):
        idx = int(bad.flatten().nonzero()[0])
        return False, (
            f"{int(bad.sum())}/{bad.numel()} wrong; first flat index {idx}: got "
            f"{got64.flatten()[idx].item():.6g}, want {want_v.flatten()[idx].item():.6g}"
        )
    rel = float((err / (scale + want_v.abs() + 1e-12)).max()) if err.numel() else 0.0
    return True, f"max rel err {rel:.2e}"


def correctness(log) -> list:
    ops = torch.ops.addernet
    results = []
    set_conv_tf32(False)  # the cuDNN weight-gradient route is checked at full float32 precision
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for s in CHECK_SHAPES:
            stride, padding, dilation, groups = s.args()
            oh, ow = s.out_hw
            x = (torch.rand(s.n, s.c, s.h, s.w, generator=gen) * 4 - 2).to(dtype)
            w = (torch.rand(s.o, s.c // groups, s.k, s.k, generator=gen) * 2 - 1).to(dtype)
            g = (torch.rand(s.n, s.o, oh, ow, generator=gen) * 2 - 1).to(dtype)
            # The folded BatchNorm terms travel in the activation dtype, as the op requires.
            scale = (torch.rand(s.o, generator=gen) * 3 - 1.5).to(dtype)
            shift = (torch.rand(s.o, generator=gen) * 4 - 2).to(dtype)
            ref = reference64(x, w, g, scale, shift, s)
            xd, wd, gd = x.cuda(), w.cuda(), g.cuda()
            conf = (list(stride), list(padding), list(dilation), groups)

            def check(what, fn, want_key, index=None):
                try:
                    out = fn()
                    torch.cuda.synchronize()
                    got = out if index is None else out[index]
                    ok, msg = compare(got, ref[want_key], dtype)
                except Exception as exc:  # a crash is a failed check, the pass goes on
                    ok, msg = False, f"{type(exc).__name__}: {exc}"
                results.append(dict(dtype=str(dtype).replace("torch.", ""), shape=s.name, check=what, ok=ok, detail=msg))
                log(f"  [{'ok' if ok else 'FAIL'}] {results[-1]['dtype']:8s} {s.name:14s} {what:22s} {msg}")

            ysz = ((s.n, s.o, oh, ow), dtype)
            poison(ysz)
            check("forward", lambda: ops.adder_conv2d(xd, wd, *conf), "y")
            poison(ysz)
            check("fused scale+shift+relu", lambda: ops.adder_conv2d_fused(
                xd, wd, scale.cuda(), shift.cuda(), *conf, True), "fused")
            poison(ysz)
            check("forward channels_last", lambda: ops.adder_conv2d(
                xd.to(memory_format=torch.channels_last), wd, *conf), "y")
            for mode in ("kernel", "cudnn"):
                with env(WGRAD_ENV, mode):
                    poison((tuple(x.shape), dtype), (tuple(w.shape), dtype))
                    check(f"grad_input [{mode}]", lambda: ops.adder_conv2d_backward(
                        gd, xd, wd, *conf, [True, True]), "gi", 0)
                    poison((tuple(x.shape), dtype), (tuple(w.shape), dtype))
                    check(f"grad_weight [{mode}]", lambda: ops.adder_conv2d_backward(
                        gd, xd, wd, *conf, [True, True]), "gw", 1)
            # Output masks: the masked gradient must come back as an empty tensor.
            try:
                gi, gw = ops.adder_conv2d_backward(gd, xd, wd, *conf, [True, False])
                gi2, gw2 = ops.adder_conv2d_backward(gd, xd, wd, *conf, [False, True])
                ok = gw.shape == (0,) and gi2.shape == (0,) and gi.shape == x.shape and gw2.shape == w.shape
                msg = f"shapes {tuple(gi.shape)} {tuple(gw.shape)} {tuple(gi2.shape)} {tuple(gw2.shape)}"
            except Exception as exc:
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            results.append(dict(dtype=str(dtype).replace("torch.", ""), shape=s.name, check="output_mask", ok=ok, detail=msg))
            if not ok:
                log(f"  [FAIL] {dtype} {s.name} output_mask {msg}")
    # A float64 CUDA tensor must be refused with a message, not crash.
    try:
        ops.adder_conv2d(torch.zeros(1, 1, 3, 3, device="cuda", dtype=torch.float64),
                         torch.zeros(1, 1, 1, 1, device="cuda", dtype=torch.float64), [1, 1], [0, 0], [1, 1], 1)
        ok, msg = False, "float64 on CUDA was accepted"
    except RuntimeError as exc:
        ok, msg = "float64" in str(exc), str(exc).splitlines()[0]
    results.append(dict(dtype="float64", shape="-", check="refused on CUDA", ok=ok, detail=msg))
    log(f"  [{'ok' if ok else 'FAIL'}] float64 refused: {msg}")
    return results


# ---------------------------------------------------------------------------------------------
# timing


def time_interleaved(runners: dict, reps: int, target_ms: float, deadline: float):
    """Median ms per call of each runner; one sample of each in turn, `reps` rounds."""
    inner, samples, errors = {}, {k: [] for k in runners}, {}
    for name, fn in list(runners.items()):
        try:
            fn()  # warm-up: Triton compiles, cuDNN picks its algorithm
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            once = (time.perf_counter() - t0) * 1e3
            inner[name] = max(1, min(50, int(target_ms / max(once, 1e-3))))
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            torch.cuda.empty_cache()
    live = [k for k in runners if k not in errors]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for rep in range(reps):
        if rep >= 3 and time.perf_counter() > deadline:
            break
        for name in (live if rep % 2 == 0 else live[::-1]):
            fn, n = runners[name], inner[name]
            start.record()
            for _ in range(n):
                fn()
            end.record()
            end.synchronize()
            samples[name].append(start.elapsed_time(end) / n)
    return {k: statistics.median(v) for k, v in samples.items() if v}, errors


def peak_mib(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def make_runners(s: Conv, backends_ok, include_slow: bool):
    import addernet.functional as AF

    stride, padding, dilation, groups = s.args()
    oh, ow = s.out_hw
    x = torch.randn(s.n, s.c, s.h, s.w, device="cuda")
    w = torch.randn(s.o, s.c // groups, s.k, s.k, device="cuda") * 0.1
    g = torch.randn(s.n, s.o, oh, ow, device="cuda")
    xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
    fwd, fb, skipped = {}, {}, {}

    def adder(backend):
        return lambda a, b: AF.adder_conv2d(a, b, None, stride, padding, dilation, groups, backend=backend)

    def fwd_bwd(f):
        def run():
            y = f(xg, wg)
            torch.autograd.grad(y, (xg, wg), g)
        return run

    def cudnn(tf32):
        def f(a, b):
            set_conv_tf32(tf32)
            return F.conv2d(a, b, None, stride, padding, dilation, groups)
        return f

    fwd["cudnn fp32"] = lambda: cudnn(False)(x, w)
    fwd["cudnn tf32"] = lambda: cudnn(True)(x, w)
    fb["cudnn fp32"] = fwd_bwd(cudnn(False))
    fb["cudnn tf32"] = fwd_bwd(cudnn(True))

    if "native" in backends_ok:
        fwd["native"] = lambda: torch.ops.addernet.adder_conv2d(x, w, list(stride), list(padding), list(dilation), groups)
        for mode in ("cudnn", "kernel"):
            def run(mode=mode, f=fwd_bwd(adder("native"))):
                # The cuDNN route at full float32, like the baseline, whatever ran before.
                set_conv_tf32(False)
                os.environ[WGRAD_ENV] = mode
                f()
            fb[f"native wgrad={mode}"] = run
    else:
        skipped["native"] = "native backend unavailable"
    if "triton" in backends_ok and include_slow:
        fwd["triton"] = lambda: adder("triton")(x, w)
        fb["triton"] = fwd_bwd(adder("triton"))
    elif "triton" not in backends_ok:
        skipped["triton"] = "triton backend unavailable"
    else:
        skipped["triton"] = "time budget"

    k = s.c // groups * s.k * s.k
    cols_bytes = s.n * s.c * s.k * s.k * oh * ow * 4
    free, _ = torch.cuda.mem_get_info()
    if not include_slow:
        skipped["reference"] = skipped["cdist"] = "time budget"
    elif cols_bytes * 6 + (1 << 28) > 0.6 * free:
        skipped["reference"] = f"needs ~{cols_bytes * 6 / 2**30:.1f} GiB"
    else:
        fwd["reference"] = lambda: adder("reference")(x, w)
        fb["reference"] = fwd_bwd(adder("reference"))
    if include_slow and groups == 1 and s.n * oh * ow * (s.o + k) * 4 * 3 < 0.6 * free:
        wflat = w.reshape(s.o, -1)

        def cdist():
            cols = F.unfold(x, (s.k, s.k), dilation=dilation, padding=padding, stride=stride).transpose(1, 2)
            return -torch.cdist(cols, wflat.expand(s.n, -1, -1), p=1).transpose(1, 2).reshape(s.n, s.o, oh, ow)
        fwd["cdist p=1"] = cdist
    elif include_slow:
        skipped["cdist"] = "does not fit"
    return fwd, fb, skipped


def bench(log, budget_s: float, reps: int, target_ms: float) -> tuple[list, list]:
    from addernet import backends

    backends_ok = backends.available()
    log(f"backends available: {backends_ok}")
    rows, problems = [], []
    t_end = time.perf_counter() + budget_s
    for i, s in enumerate(BENCH_SHAPES):
        remaining = t_end - time.perf_counter()
        include_slow = remaining > budget_s * 0.25
        case_deadline = time.perf_counter() + max(2.0, remaining / (len(BENCH_SHAPES) - i))
        try:
            fwd, fb, skipped = make_runners(s, backends_ok, include_slow)
        except Exception as exc:
            problems.append(f"{s.net} {s.name}: setup failed: {exc}")
            log(problems[-1])
            continue
        for pass_name, runners in (("fwd", fwd), ("fwd+bwd", fb)):
            med, errors = time_interleaved(runners, reps, target_ms, case_deadline)
            base = med.get("cudnn fp32")
            for name in runners:
                row = dict(net=s.net, layer=s.name, n=s.n, c=s.c, h=s.h, w=s.w, o=s.o, k=s.k,
                           stride=s.stride, pad=s.pad, pass_=pass_name, contender=name)
                if name in med:
                    row["ms"] = med[name]
                    row["vs_cudnn_fp32"] = med[name] / base if base else None
                    try:
                        row["peak_mib"] = peak_mib(runners[name])
                    except Exception as exc:
                        row["peak_mib"] = None
                        row["error"] = f"peak run: {exc}"
                else:
                    row["error"] = errors.get(name, "not timed")
                    problems.append(f"{s.net} {s.name} {pass_name} {name}: {row['error']}")
                rows.append(row)
            for name, why in skipped.items():
                rows.append(dict(net=s.net, layer=s.name, pass_=pass_name, contender=name, skipped=why))
        os.environ.pop(WGRAD_ENV, None)
        torch.cuda.empty_cache()
        log(f"timed {s.net} {s.name} ({time.perf_counter() - t_end + budget_s:.0f}s elapsed)")
    set_conv_tf32(False)
    return rows, problems


def markdown(rows, device) -> str:
    columns = [("fwd", "cudnn fp32"), ("fwd", "cudnn tf32"), ("fwd", "native"), ("fwd", "triton"),
               ("fwd", "reference"), ("fwd", "cdist p=1"), ("fwd+bwd", "cudnn fp32"),
               ("fwd+bwd", "cudnn tf32"), ("fwd+bwd", "native wgrad=cudnn"),
               ("fwd+bwd", "native wgrad=kernel"), ("fwd+bwd", "triton"), ("fwd+bwd", "reference")]
    by = {}
    for r in rows:
        by[(r["net"], r["layer"], r["pass_"], r["contender"])] = r
    lines = [f"Adder conv on {device}: median ms (ratio to cuDNN fp32 of the same pass); "
             "peak MiB above inputs for native fwd+bwd (wgrad=cudnn / kernel).", ""]
    head = ["net", "layer"] + [f"{p} {c}" for p, c in columns] + ["peak MiB native f+b"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for s in BENCH_SHAPES:
        cells = [s.net, s.name]
        for p, c in columns:
            r = by.get((s.net, s.name, p, c))
            if r is None:
                cells.append("")
            elif "ms" in r:
                ratio = r.get("vs_cudnn_fp32")
                cells.append(f"{r['ms']:.3f}" + (f" ({ratio:.1f}x)" if ratio and c != "cudnn fp32" else ""))
            elif "skipped" in r:
                cells.append(f"skip: {r['skipped']}")
            else:
                cells.append("ERROR")
        peaks = []
        for mode in ("cudnn", "kernel"):
            r = by.get((s.net, s.name, "fwd+bwd", f"native wgrad={mode}"))
            peaks.append(f"{r['peak_mib']:.0f}" if r and r.get("peak_mib") is not None else "-")
        cells.append(" / ".join(peaks))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "out/gpu_bench"))
    ap.add_argument("--budget-s", type=float, default=150.0, help="time budget of the timing part")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--target-ms", type=float, default=2.0, help="length of one timing sample")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    if not torch.cuda.is_available():
        log("bench_gpu: no CUDA device visible to torch; nothing to do")
        return 2
    device = torch.cuda.get_device_name()
    log(f"device: {device}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version()}")
    result = dict(device=device, torch=torch.__version__, cuda=torch.version.cuda,
                  cudnn=torch.backends.cudnn.version(), correctness=[], timings=[], problems=[])
    failed = False
    try:
        import addernet  # noqa: F401  (registers torch.ops.addernet)
        from addernet import _extension

        if not _extension.cuda_built():
            raise RuntimeError(f"addernet has no CUDA kernels registered ({_extension.NATIVE_ERROR or 'CPU-only build'})")
    except Exception as exc:
        result["problems"].append(f"native CUDA extension unavailable: {exc}")
        log(result["problems"][-1])
        failed = True
    if not args.skip_correctness and not failed:
        log("== correctness (float64 CPU definition, NaN-poisoned allocator)")
        try:
            result["correctness"] = correctness(log)
        except Exception:
            result["problems"].append("correctness pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
        bad = [r for r in result["correctness"] if not r["ok"]]
        log(f"correctness: {len(result['correctness']) - len(bad)} passed, {len(bad)} failed")
        failed |= bool(bad) or not result["correctness"]
    if not args.skip_bench:
        log("== timings")
        try:
            rows, problems = bench(log, args.budget_s, args.reps, args.target_ms)
            result["timings"] = rows
            result["problems"] += problems
            failed |= bool(problems)
        except Exception:
            result["problems"].append("timing pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
            failed = True
        table = markdown(result["timings"], device)
        with open(os.path.join(args.out, "gpu_results.md"), "w") as f:
            f.write(table)
        print(table)
    with open(os.path.join(args.out, "gpu_results.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    for p in result["problems"]:
        log(f"problem: {p}")
    log(f"bench_gpu: {'FAILED' if failed else 'ok'}; results in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
