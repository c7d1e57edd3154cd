"""The adder op of each backend against cuDNN's F.conv2d, layer by layer: forward and
forward+backward, interleaved (``latency.time_interleaved``, CUDA events on a GPU), medians and
ratios to cuDNN with TF32 off, peak memory, and the markdown table of it all.

Contenders of a layer: cuDNN with TF32 off and on; the first backend asked for (under each of its
backward variants, e.g. the native CUDA weight-gradient routes); the other backends while the time
budget lasts, a slow definition (``Backend.fast`` False: unfold) only where its columns fit; and
torch.cdist(p=1) on unfolded patches (forward; the adder forward without a kernel of its own).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from .. import backends
from .knobs import set_conv_tf32, sync, with_env, with_tf32
from .latency import time_interleaved
from .model_bench import peak_memory
from .op_table import candidates
from .shapes import LAYER_SETS

BASELINE = "cudnn fp32"


def _free_bytes(device) -> float:
    return torch.cuda.mem_get_info()[0] if device == "cuda" else float("inf")


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


def contenders(s, device, names: list[str], left_out: dict, include_slow: bool,
               backward_variants: Mapping[str, Mapping[str, str]] | None = None) -> tuple[dict, dict, dict]:
    """(forward, forward+backward, skipped) runners of one layer shape. ``names``: the backends to
    time, the first always, the others when ``include_slow``; ``left_out``: backends that cannot
    run here, with the reason; ``backward_variants``: label -> environment of the first backend's
    forward+backward, each timed as its own contender ('<name> <label>')."""
    free = _free_bytes(device)
    oh, ow = s.out_hw
    cols_bytes = s.batch * s.cin * s.kernel ** 2 * oh * ow * 4
    skipped, timed = dict(left_out), names[:1]
    for be in names[1:]:
        if not include_slow:
            skipped[be] = "time budget"
        elif not backends.descriptor(be).fast and cols_bytes * 6 + (1 << 28) > 0.6 * free:
            skipped[be] = f"needs ~{cols_bytes * 6 / 2**30:.1f} GiB"
        else:
            timed.append(be)
    passes = {}
    for mode in ("fwd", "fwdbwd"):
        c = candidates(s, timed, mode, device=device)
        runners = {BASELINE: with_tf32(c["conv"], False), "cudnn tf32": with_tf32(c["conv"], True)}
        for i, be in enumerate(timed):
            if i == 0 and mode == "fwdbwd" and backward_variants:
                runners.update({f"{be} {label}": with_env(c[be], env) for label, env in backward_variants.items()})
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


def _probe(runners: dict, device) -> dict:
    """Calls each runner once (Triton compiles, cuDNN picks its algorithm); the errors of those that fail."""
    errors = {}
    for name, fn in runners.items():
        try:
            fn()
            sync(device)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if device == "cuda":
                torch.cuda.empty_cache()
    return errors


def time_layers(names: list[str], left_out: dict, sets, device: str, budget_s: float, reps: int, target_ms: float,
                backward_variants=None, log: Callable[[str], None] = print) -> tuple[list, list]:
    """(rows, problems) of timing every layer of ``sets`` ((layer set, batch) pairs of
    ``shapes.LAYER_SETS``) within about ``budget_s``; see ``contenders`` for the other arguments.
    A row is one contender of one layer and pass: its median ms and ratio to cuDNN fp32, or why it
    was skipped, or its error (which is also a problem)."""
    shapes = [(net, s) for net, batch in sets for s in LAYER_SETS[net](batch)]
    rows, problems = [], []
    t_end = time.perf_counter() + budget_s
    for i, (net, s) in enumerate(shapes):
        remaining = t_end - time.perf_counter()
        case_s = max(2.0, remaining / (len(shapes) - i))
        try:
            fwd, fb, skipped = contenders(s, device, names, left_out, remaining > budget_s * 0.25, backward_variants)
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
            base = timings[BASELINE].median if BASELINE in timings else None
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


def markdown(rows, device, peak_of: str | None = None) -> str:
    """The table: a line per layer, a column per (pass, contender) in the order they first appear,
    baseline first; ``peak_of``: the contender prefix whose forward+backward peak MiB close each line."""
    by = {(r["net"], r["layer"], r["pass_"], r["contender"]): r for r in rows}
    cases = list(dict.fromkeys((r["net"], r["layer"]) for r in rows))
    columns = list(dict.fromkeys((r["pass_"], r["contender"]) for r in rows))
    columns.sort(key=lambda pc: (pc[0] != "fwd", not pc[1].startswith("cudnn")))  # stable: first seen within
    peaks_of = [c for p, c in columns if p == "fwd+bwd" and peak_of and c.startswith(peak_of)]
    lines = [f"Adder conv on {device}: median ms (ratio to cuDNN fp32 of the same pass)"
             + (f"; peak MiB above inputs of {' / '.join(peaks_of)}." if peaks_of else "."), ""]
    head = ["net", "layer"] + [f"{p} {c}" for p, c in columns] + ([f"peak MiB {peak_of} f+b"] if peaks_of else [])
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for net, layer in cases:
        cells = [net, layer]
        for p, c in columns:
            r = by.get((net, layer, p, c))
            if r is None:
                cells.append("")
            elif "ms" in r:
                ratio = r.get("vs_cudnn_fp32")
                cells.append(f"{r['ms']:.3f}" + (f" ({ratio:.1f}x)" if ratio and c != BASELINE else ""))
            elif "skipped" in r:
                cells.append(f"skip: {r['skipped']}")
            else:
                cells.append("ERROR")
        if peaks_of:
            cells.append(" / ".join(f"{r['peak_mib']:.0f}" if (r := by.get((net, layer, "fwd+bwd", c)))
                                    and r.get("peak_mib") is not None else "-" for c in peaks_of))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
