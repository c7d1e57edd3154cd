"""Times the adder op per backend against F.conv2d at the paper's layer shapes.

    python benchmarks/bench_ops.py --sets resnet20 --threads 2 --json out.json   # addernet.cli.op_bench

Every number printed is a ratio of medians measured interleaved in this process, with the thread
count fixed and stated. Absolute times are printed for reference only.
"""
from __future__ import annotations

import json
import platform

import torch
import torch.nn.functional as F

import addernet

from .._deprecated import moved_to
from ..machine import cpu_flags
from .latency import time_interleaved
from .shapes import LAYER_SETS


def candidates(shape, backends, mode, dtype=torch.float32, device="cpu"):
    """{'conv': F.conv2d, backend: the adder op, ...} at one layer ``shape``, as closures that run a
    forward (``mode`` 'fwd') or a forward and backward ('fwdbwd') on fixed random inputs."""
    x = torch.randn(shape.batch, shape.cin, *shape.in_hw, dtype=dtype, device=device)
    w = torch.randn(shape.cout, shape.cin // shape.groups, shape.kernel, shape.kernel, dtype=dtype, device=device)
    conf = (None, *shape.conv_args)
    out = {}

    def make(fn):
        if mode == "fwd":
            def run():
                with torch.no_grad():
                    fn(x, w)
            return run
        xg, wg = x.clone().requires_grad_(), w.clone().requires_grad_()
        g = torch.randn_like(fn(x, w))

        def run():
            y = fn(xg, wg)
            xg.grad = wg.grad = None
            y.backward(g)
        return run

    out["conv"] = make(lambda a, b: F.conv2d(a, b, *conf))
    for be in backends:
        out[be] = make(lambda a, b, be=be: addernet.functional.adder_conv2d(a, b, *conf, backend=be))
    return out


def _algorithm(shape, backends) -> str | None:
    """The kernel variant the first timed backend that has several picks for this layer
    (the native CPU kernels' patch algorithms, 'forward/input-gradient')."""
    for be in backends:
        pick = addernet.backends.descriptor(be).algorithm
        if pick is not None:
            return pick([shape.batch, shape.cin, shape.size, shape.size],
                        [shape.cout, shape.cin, shape.kernel, shape.kernel],
                        [shape.stride] * 2, [shape.padding] * 2, [1, 1], 1)
    return None


def _kernel_info(backends) -> str | None:
    """What the timed backends report about their kernels, one string (None: nothing)."""
    lines = [f"{label}: {text}" for be in backends for label, text in addernet.backends.descriptor(be).info()]
    return "; ".join(lines) or None


# The CPU targets (ratio to F.conv2d): forward at most 2.0x, forward + backward at most 2.5x.
TARGETS = {"fwd": 2.0, "fwdbwd": 2.5}


def markdown(rows: list[dict], backend: str, meta: dict) -> str:
    lines = [f"Adder op ({backend}) / F.conv2d, {meta['dtype']}, {meta['threads']} threads, medians of interleaved "
             f"runs (spread = half the interquartile range). Target: forward <= {TARGETS['fwd']}x, "
             f"forward + backward <= {TARGETS['fwdbwd']}x.", "",
             "| set | layer | batch | forward | fwd + bwd | conv fwd ms | CPU algorithm (fwd/dx) |",
             "|---|---|---|---|---|---|---|"]
    by_layer: dict[tuple, dict] = {}
    for r in rows:
        by_layer.setdefault((r["set"], r["layer"], r["batch"]), {})[r["mode"]] = r

    def cell(r, mode):
        if r is None:
            return "-"
        ratio = r[f"{backend}_ratio"]
        mark = "" if ratio <= TARGETS[mode] else " (miss)"
        return f"{ratio:.2f}x ±{r[f'{backend}_spread'] * 100:.0f}%{mark}"

    for (set_name, layer, batch), modes in by_layer.items():
        fwd = modes.get("fwd")
        algo = next(iter(modes.values())).get("cpu_algorithm") or "-"
        conv_ms = f"{fwd['conv_s'] * 1e3:.2f}" if fwd else "-"
        lines.append(f"| {set_name} | {layer} | {batch} | {cell(fwd, 'fwd')} | {cell(modes.get('fwdbwd'), 'fwdbwd')} | "
                     f"{conv_ms} | {algo} |")
    return "\n".join(lines) + "\n"


def run(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    backends = [b for b in (args.backends or addernet.backends.current()).split(",") if b]
    for be in backends:
        addernet.backends.current(be)  # a clear error now rather than midway
    dtype = getattr(torch, args.dtype)
    rows = []
    print(f"# adder op vs F.conv2d, {args.dtype}, {torch.get_num_threads()} threads, "
          f"medians of interleaved runs, ratio = backend / conv")
    if _kernel_info(backends):
        print(f"# kernels: {_kernel_info(backends)}")
    print(f"{'set':<10} {'layer':<18} {'batch':>5} {'mode':<7} " + " ".join(f"{b + '/conv':>14}" for b in backends)
          + f" {'conv ms':>9}")
    for spec in args.sets.split(","):
        set_name, _, batch = spec.partition(":")
        if set_name not in LAYER_SETS:
            raise SystemExit(f"unknown layer set {set_name!r}; choose from {', '.join(LAYER_SETS)}")
        batch = args.batch or (int(batch) if batch else None)
        shapes = LAYER_SETS[set_name]() if batch is None else LAYER_SETS[set_name](batch)
        for shape in shapes:
            for mode in args.modes.split(","):
                timings = time_interleaved(candidates(shape, backends, mode, dtype), repeats=args.repeats,
                                  max_seconds=args.max_seconds)
                conv = timings["conv"].median
                row = dict(set=set_name, layer=shape.name, batch=shape.batch, mode=mode, conv_s=conv,
                           cpu_algorithm=_algorithm(shape, backends),
                           **{f"{b}_s": timings[b].median for b in backends},
                           **{f"{b}_ratio": timings[b].median / conv for b in backends},
                           **{f"{b}_spread": timings[b].spread for b in backends})
                rows.append(row)
                print(f"{set_name:<10} {shape.name:<18} {shape.batch:>5} {mode:<7} "
                      + " ".join(f"{row[b + '_ratio']:>13.2f}x" for b in backends) + f" {conv * 1e3:>9.2f}",
                      flush=True)
    meta = dict(torch=torch.__version__, addernet=addernet.__version__, python=platform.python_version(),
                machine=platform.machine(), cpu_flags=cpu_flags(), threads=torch.get_num_threads(),
                dtype=args.dtype, kernels=_kernel_info(backends))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(rows, backends[0], meta))
    return rows


# The flags moved to the CLI layer (addernet.cli.op_bench); these names stay one release.
__getattr__ = moved_to("addernet.cli.op_bench", __name__, ("add_arguments", "main"))
