"""GPU check of the adder convolution: correctness of the native ops, then timings against cuDNN.

    python benchmarks/bench_gpu.py --out OUT [--budget-s 150] [--skip-bench] [--skip-correctness]
    python benchmarks/bench_gpu.py --dry-run --out OUT    # CPU only: every step on tiny shapes

A driver over addernet.bench: the shapes of addernet.bench.shapes, the candidates of
addernet.bench.op_table, the interleaved CUDA-event timing of addernet.bench.latency and the
float64 definition of addernet.backends.reference. It needs torch (and triton for that backend)
only: the GPU machines it runs on have nothing else installed.

Correctness: per dtype (float32, float16, bfloat16) fresh random inputs on CHECK_SHAPES, small shapes
that reach every kernel tile configuration; forward, fused, backward (both weight-gradient routes,
ADDERNET_CUDA_WGRAD=kernel|cudnn) and the output masks, against the float64 definition evaluated on
the CPU. The caching allocator is poisoned with NaN before each call, so an output element a kernel
forgets to write shows up.

Timings: the ResNet-20 layers at batch 256 and the ResNet-18 layers at batch 64, forward and
forward+backward, for the native op, Triton (when available), the unfold reference (when it fits),
torch.cdist(p=1) on unfolded patches (forward) and cuDNN F.conv2d with TF32 off and on. The
contenders of a case run interleaved and the median is kept; ratios are against cuDNN with TF32
off. Writes OUT/gpu_results.json and OUT/gpu_results.md.

--dry-run runs the same code on the CPU: the native CPU ops (float32, bfloat16) against the same
reference, then the timing loop on the 'tiny' shapes for 2 rounds. Its times are no measurement:
it exists so that CI catches a change that breaks this script before a GPU runs it.

Exit status: 0 when every correctness check passed and every contender ran or was skipped for a
stated reason, 1 otherwise, 2 without a GPU (and without --dry-run).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from addernet.backends import reference  # noqa: E402
from addernet.bench.latency import time_interleaved  # noqa: E402
from addernet.bench.model_bench import peak_memory, resolve_backends  # noqa: E402
from addernet.bench.op_table import candidates  # noqa: E402
from addernet.bench.shapes import CHECK_SHAPES, LAYER_SETS  # noqa: E402
from addernet.cli.checks import (Parser, UsageError, check_out_dir, positive_float, positive_int,  # noqa: E402
                                 report)

WGRAD_ENV = "ADDERNET_CUDA_WGRAD"
# (layer set, batch) timed on the GPU, and in a dry run.
TIMED_SETS = {"gpu": (("resnet20", 256), ("resnet18", 64)), "dry": (("tiny", 2),)}
DTYPES = {"cuda": (torch.float32, torch.float16, torch.bfloat16), "cpu": (torch.float32, torch.bfloat16)}
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
    # Only where cuDNN runs: the CPU dry run must leave torch's process-wide flags alone (setting the
    # conv flag alone leaves conv and RNN disagreeing, which torch.export then refuses in any later
    # code of the same process).
    if not torch.cuda.is_available():
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = "tf32" if on else "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = on


# ---------------------------------------------------------------------------------------------
# correctness


def expected(x, w, g, scale, shift, s):
    """Forward, fused, and both gradients in float64 on the CPU from the library's definition, each
    with the sum of |terms| of every element (what a rounding error scales with)."""
    x, w, g = x.double().cpu(), w.double().cpu(), g.double().cpu()
    conf = s.conv_args
    y = reference.forward(x, w, *conf)
    gi, gw = reference.backward(g, x, w, *conf)
    ag = g.abs()
    # grad_weight = sum G*(X - W), directly or as sum G*X - W*sum G (the cuDNN route): both are
    # bounded by sum |G|(|X| + |W|); padded taps (X = 0) count, as in the op.
    gw_scale = (torch.nn.grad.conv2d_weight(x.abs(), w.shape, ag, *conf)
                + w.abs() * ag.sum((0, 2, 3)).view(-1, 1, 1, 1))
    # grad_input = sum G*HardTanh(W - X). Its |terms| come from the same definition through
    # |HardTanh(d)| = clamp(d, 0, 1) + clamp(-d, 0, 1) and clamp(d, 0, 1) = (HardTanh(2d - 1) + 1) / 2,
    # with 2d - 1 = (2W - 1) - 2X: two more reference gradients and a sum of |G| over the taps.
    taps = torch.nn.grad.conv2d_input(x.shape, torch.ones_like(w), ag, *conf)
    up = reference.backward(ag, 2 * x, 2 * w - 1, *conf, need_weight=False)[0]
    down = reference.backward(ag, -2 * x, -2 * w - 1, *conf, need_weight=False)[0]
    gi_scale = (up + down) / 2 + taps
    sc, sf = scale.double().cpu().view(1, -1, 1, 1), shift.double().cpu().view(1, -1, 1, 1)
    fused = (sc * y + sf).clamp_min(0)
    return dict(y=(y, -y), fused=(fused, sc.abs() * -y + sf.abs()), gi=(gi, gi_scale), gw=(gw, gw_scale))


def poison(device, *shapes_dtypes):
    """Leaves NaN-filled blocks of these sizes in the CUDA caching allocator for the next op."""
    if device != "cuda":
        return  # the CPU allocator hands memory back to the system: nothing to poison
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
        return False, (f"{int(bad.sum())}/{bad.numel()} wrong; first flat index {idx}: got "
                       f"{got64.flatten()[idx].item():.6g}, want {want_v.flatten()[idx].item():.6g}")
    rel = float((err / (scale + want_v.abs() + 1e-12)).max()) if err.numel() else 0.0
    return True, f"max rel err {rel:.2e}"


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def correctness(log, device: str = "cuda") -> list:
    ops = torch.ops.addernet
    results = []
    set_conv_tf32(False)  # the cuDNN weight-gradient route is checked at full float32 precision
    gen = torch.Generator().manual_seed(0)

    def record(dtype, shape, what, ok, msg, quiet=False):
        results.append(dict(dtype=str(dtype).replace("torch.", ""), shape=shape, check=what, ok=ok, detail=msg))
        if not (quiet and ok):
            log(f"  [{'ok' if ok else 'FAIL'}] {results[-1]['dtype']:8s} {shape:14s} {what:22s} {msg}")

    for dtype in DTYPES[device]:
        for s in CHECK_SHAPES:
            oh, ow = s.out_hw
            x = (torch.rand(s.batch, s.cin, *s.in_hw, generator=gen) * 4 - 2).to(dtype)
            w = (torch.rand(s.cout, s.cin // s.groups, s.kernel, s.kernel, generator=gen) * 2 - 1).to(dtype)
            g = (torch.rand(s.batch, s.cout, oh, ow, generator=gen) * 2 - 1).to(dtype)
            # The folded BatchNorm terms travel in the activation dtype, as the op requires.
            scale = (torch.rand(s.cout, generator=gen) * 3 - 1.5).to(dtype)
            shift = (torch.rand(s.cout, generator=gen) * 4 - 2).to(dtype)
            ref = expected(x, w, g, scale, shift, s)
            xd, wd, gd = x.to(device), w.to(device), g.to(device)
            conf = tuple(list(a) if isinstance(a, tuple) else a for a in s.conv_args)

            def check(what, fn, want_key, index=None):
                try:
                    out = fn()
                    _sync(device)
                    ok, msg = compare(out if index is None else out[index], ref[want_key], dtype)
                except Exception as exc:  # a crash is a failed check, the pass goes on
                    ok, msg = False, f"{type(exc).__name__}: {exc}"
                record(dtype, s.name, what, ok, msg)

            ysz = ((s.batch, s.cout, oh, ow), dtype)
            poison(device, ysz)
            check("forward", lambda: ops.adder_conv2d(xd, wd, *conf), "y")
            poison(device, ysz)
            check("fused scale+shift+relu", lambda: ops.adder_conv2d_fused(
                xd, wd, scale.to(device), shift.to(device), *conf, True), "fused")
            poison(device, ysz)
            check("forward channels_last", lambda: ops.adder_conv2d(
                xd.to(memory_format=torch.channels_last), wd, *conf), "y")
            for mode in ("kernel", "cudnn"):
                with env(WGRAD_ENV, mode):
                    for what, key, index in (("grad_input", "gi", 0), ("grad_weight", "gw", 1)):
                        poison(device, (tuple(x.shape), dtype), (tuple(w.shape), dtype))
                        check(f"{what} [{mode}]", lambda: ops.adder_conv2d_backward(
                            gd, xd, wd, *conf, [True, True]), key, index)
            # Output masks: the masked gradient must come back as an empty tensor.
            try:
                gi, gw = ops.adder_conv2d_backward(gd, xd, wd, *conf, [True, False])
                gi2, gw2 = ops.adder_conv2d_backward(gd, xd, wd, *conf, [False, True])
                ok = gw.shape == (0,) and gi2.shape == (0,) and gi.shape == x.shape and gw2.shape == w.shape
                msg = f"shapes {tuple(gi.shape)} {tuple(gw.shape)} {tuple(gi2.shape)} {tuple(gw2.shape)}"
            except Exception as exc:
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            record(dtype, s.name, "output_mask", ok, msg, quiet=True)
    if device == "cuda":  # a float64 CUDA tensor must be refused with a message, not crash
        try:
            ops.adder_conv2d(torch.zeros(1, 1, 3, 3, device="cuda", dtype=torch.float64),
                             torch.zeros(1, 1, 1, 1, device="cuda", dtype=torch.float64), [1, 1], [0, 0], [1, 1], 1)
            ok, msg = False, "float64 on CUDA was accepted"
        except RuntimeError as exc:
            ok, msg = "float64" in str(exc), str(exc).splitlines()[0]
        record("float64", "-", "refused on CUDA", ok, msg)
    return results


# ---------------------------------------------------------------------------------------------
# timing


def _tf32(fn, on: bool):
    def run():
        set_conv_tf32(on)
        return fn()
    return run


def _wgrad(fn, mode: str):
    def run():
        set_conv_tf32(False)  # the cuDNN route at full float32, like the baseline, whatever ran before
        with env(WGRAD_ENV, mode):
            return fn()
    return run


def _free_bytes(device) -> float:
    return torch.cuda.mem_get_info()[0] if device == "cuda" else float("inf")


def contenders(s, device, names: list[str], left_out: dict, include_slow: bool) -> tuple[dict, dict, dict]:
    """(forward, forward+backward, skipped) candidates of one layer shape; ``left_out``: the
    backends that cannot run here, with the reason."""
    free = _free_bytes(device)
    oh, ow = s.out_hw
    cols_bytes = s.batch * s.cin * s.kernel ** 2 * oh * ow * 4
    skipped, timed = dict(left_out), [b for b in names if b == "native"]
    for be in ("triton", "reference"):
        if be not in names:
            continue
        if not include_slow:
            skipped[be] = "time budget"
        elif be == "reference" and cols_bytes * 6 + (1 << 28) > 0.6 * free:
            skipped[be] = f"needs ~{cols_bytes * 6 / 2**30:.1f} GiB"
        else:
            timed.append(be)
    passes = {}
    for mode in ("fwd", "fwdbwd"):
        c = candidates(s, timed, mode, device=device)
        runners = {"cudnn fp32": _tf32(c["conv"], False), "cudnn tf32": _tf32(c["conv"], True)}
        for be in timed:
            if be == "native" and mode == "fwdbwd":
                runners.update({f"native wgrad={m}": _wgrad(c[be], m) for m in ("cudnn", "kernel")})
            else:
                runners[be] = c[be]
        passes[mode] = runners
    if not include_slow:
        skipped["cdist"] = "time budget"
    elif s.groups == 1 and s.batch * oh * ow * (s.cout + s.cin * s.kernel ** 2) * 4 * 3 < 0.6 * free:
        passes["fwd"]["cdist p=1"] = _cdist(s, device)
    else:
        skipped["cdist"] = "does not fit"
    return passes["fwd"], passes["fwdbwd"], skipped


def _cdist(s, device):
    """-||patch - filter||_1 by torch.cdist on unfolded patches: the adder forward without a kernel."""
    x = torch.randn(s.batch, s.cin, *s.in_hw, device=device)
    wflat = torch.randn(s.cout, s.cin * s.kernel ** 2, device=device)
    oh, ow = s.out_hw

    def run():
        with torch.no_grad():
            cols = F.unfold(x, s.kernel, dilation=s.dilation, padding=s.padding, stride=s.stride).transpose(1, 2)
            return -torch.cdist(cols, wflat.expand(s.batch, -1, -1), p=1).transpose(1, 2).reshape(
                s.batch, s.cout, oh, ow)
    return run


def _probe(runners: dict, device) -> dict:
    """Calls each runner once (Triton compiles, cuDNN picks its algorithm); the errors of those that fail."""
    errors = {}
    for name, fn in runners.items():
        try:
            fn()
            _sync(device)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if device == "cuda":
                torch.cuda.empty_cache()
    return errors


def bench(log, device: str, sets, budget_s: float, reps: int, target_ms: float) -> tuple[list, list]:
    names, notes = resolve_backends(None, device, 0)
    log(f"backends timed: {names}" + "".join(f"; {n}" for n in notes))
    left_out = dict(n.split(": ", 1) for n in notes)  # each note is 'backend: why'
    left_out.update({be: "unavailable" for be in ("native", "triton", "reference")
                     if be not in names and be not in left_out})
    shapes = [(net, s) for net, batch in sets for s in LAYER_SETS[net](batch)]
    rows, problems = [], []
    t_end = time.perf_counter() + budget_s
    for i, (net, s) in enumerate(shapes):
        remaining = t_end - time.perf_counter()
        case_s = max(2.0, remaining / (len(shapes) - i))
        try:
            fwd, fb, skipped = contenders(s, device, names, left_out, include_slow=remaining > budget_s * 0.25)
        except Exception as exc:
            problems.append(f"{net} {s.name}: setup failed: {exc}")
            log(problems[-1])
            continue
        for pass_name, runners in (("fwd", fwd), ("fwd+bwd", fb)):
            errors = _probe(runners, device)
            live = {k: v for k, v in runners.items() if k not in errors}
            # warmup 0: _probe was the warm-up call; each pass gets half the case's time.
            timings = time_interleaved(live, repeats=reps, warmup=0, cuda=device == "cuda", max_seconds=case_s / 2,
                                       sample_seconds=target_ms / 1e3)
            base = timings["cudnn fp32"].median if "cudnn fp32" in timings else None
            for name in runners:
                row = dict(net=net, layer=s.name, n=s.batch, c=s.cin, h=s.size, w=s.in_hw[1], o=s.cout, k=s.kernel,
                           stride=s.stride, pad=s.padding, pass_=pass_name, contender=name)
                if name in timings:
                    row["ms"] = timings[name].median * 1e3
                    row["vs_cudnn_fp32"] = row["ms"] / (base * 1e3) if base else None
                    if device == "cuda":
                        try:
                            row["peak_mib"] = peak_memory(runners[name], device) / 2**20
                        except Exception as exc:
                            row["peak_mib"] = None
                            row["error"] = f"peak run: {exc}"
                else:
                    row["error"] = errors.get(name, "not timed")
                    problems.append(f"{net} {s.name} {pass_name} {name}: {row['error']}")
                rows.append(row)
            for name, why in skipped.items():
                rows.append(dict(net=net, layer=s.name, pass_=pass_name, contender=name, skipped=why))
        if device == "cuda":
            torch.cuda.empty_cache()
        log(f"timed {net} {s.name} ({time.perf_counter() - t_end + budget_s:.0f}s elapsed)")
    set_conv_tf32(False)
    return rows, problems


COLUMNS = [("fwd", "cudnn fp32"), ("fwd", "cudnn tf32"), ("fwd", "native"), ("fwd", "triton"), ("fwd", "reference"),
           ("fwd", "cdist p=1"), ("fwd+bwd", "cudnn fp32"), ("fwd+bwd", "cudnn tf32"),
           ("fwd+bwd", "native wgrad=cudnn"), ("fwd+bwd", "native wgrad=kernel"), ("fwd+bwd", "triton"),
           ("fwd+bwd", "reference")]


def markdown(rows, device) -> str:
    by = {(r["net"], r["layer"], r["pass_"], r["contender"]): r for r in rows}
    cases = list(dict.fromkeys((r["net"], r["layer"]) for r in rows))
    lines = [f"Adder conv on {device}: median ms (ratio to cuDNN fp32 of the same pass); "
             "peak MiB above inputs for native fwd+bwd (wgrad=cudnn / kernel).", ""]
    head = ["net", "layer"] + [f"{p} {c}" for p, c in COLUMNS] + ["peak MiB native f+b"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for net, layer in cases:
        cells = [net, layer]
        for p, c in COLUMNS:
            r = by.get((net, layer, p, c))
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
            r = by.get((net, layer, "fwd+bwd", f"native wgrad={mode}"))
            peaks.append(f"{r['peak_mib']:.0f}" if r and r.get("peak_mib") is not None else "-")
        cells.append(" / ".join(peaks))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _native_problem(device) -> str | None:
    from addernet.backends.native import extension

    if not extension.native_available():
        return f"native extension unavailable: {extension.NATIVE_ERROR}"
    if device == "cuda" and not extension.cuda_built():
        return "native CUDA extension unavailable: addernet has no CUDA kernels registered (CPU-only build)"
    return None


def main(argv=None) -> int:
    ap = Parser(prog="bench_gpu.py", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "out/gpu_bench"))
    ap.add_argument("--budget-s", type=positive_float, default=None,
                    help="time budget of the timing part (150; dry run 60)")
    ap.add_argument("--reps", type=positive_int, default=None, help="timed rounds per case (15; dry run 2)")
    ap.add_argument("--target-ms", type=positive_float, default=2.0, help="length of one timing sample")
    ap.add_argument("--skip-correctness", action="store_true")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--dry-run", action="store_true",
                    help="run every step on the CPU with tiny shapes (CI): checks the script, measures nothing")
    args = ap.parse_args(argv)
    dry = args.dry_run
    budget_s = args.budget_s if args.budget_s is not None else (60.0 if dry else 150.0)
    reps = args.reps if args.reps is not None else (2 if dry else 15)
    try:  # an unwritable --out was an OSError traceback
        check_out_dir(args.out, "--out")
    except UsageError as exc:
        return report("bench_gpu.py", exc)
    os.makedirs(args.out, exist_ok=True)

    def log(msg):
        print(msg, flush=True)

    if not dry and not torch.cuda.is_available():
        log("bench_gpu: no CUDA device visible to torch; nothing to do (--dry-run runs it on the CPU)")
        return 2
    device = "cpu" if dry else "cuda"
    name = "CPU (dry run: no timing claims)" if dry else torch.cuda.get_device_name()
    log(f"device: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version() if not dry else '-'}")
    threads = torch.get_num_threads()
    if dry:
        # One thread: a dry run shares its machine (CI, a laptop), where an OpenMP team that waits
        # for a descheduled thread turns a microsecond op into 100 ms.
        torch.set_num_threads(1)
    try:
        return _run(args, log, device, name, dry, budget_s, reps)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the dry-run test


def _run(args, log, device, name, dry, budget_s, reps) -> int:
    result = dict(device=name, dry_run=dry, torch=torch.__version__, cuda=torch.version.cuda,
                  cudnn=None if dry else torch.backends.cudnn.version(), correctness=[], timings=[], problems=[])
    failed = False
    problem = _native_problem(device)
    if problem:
        result["problems"].append(problem)
        log(problem)
        failed = True
    if not args.skip_correctness and not failed:
        log("== correctness (float64 CPU definition" + (", NaN-poisoned allocator)" if not dry else ")"))
        try:
            result["correctness"] = correctness(log, device)
        except Exception:
            result["problems"].append("correctness pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
        bad = [r for r in result["correctness"] if not r["ok"]]
        log(f"correctness: {len(result['correctness']) - len(bad)} passed, {len(bad)} failed")
        failed |= bool(bad) or not result["correctness"]
    if not args.skip_bench:
        log("== timings" + (" (dry run: tiny shapes, not measurements)" if dry else ""))
        try:
            rows, problems = bench(log, device, TIMED_SETS["dry" if dry else "gpu"], budget_s, reps,
                                   args.target_ms)
            result["timings"] = rows
            result["problems"] += problems
            failed |= bool(problems)
        except Exception:
            result["problems"].append("timing pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
            failed = True
        table = markdown(result["timings"], name)
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
