"""A model's multiplications, additions, energy, latency and memory, CNN against AdderNet.

    bench_model("resnet20", kind="both", threads=2)   # the library call behind `addernet bench`

Counts are per input image (``counts.CONVENTION``); latency and memory are at ``batch_size``.
Timing: every candidate (the conv twin and each adder backend) runs interleaved in one process,
after warm-up, with the thread count fixed; medians and half-IQR spreads are reported, and on CUDA
the time comes from device events. Each weight layer is also timed alone at the input shape it
saw in the model (layers of one shape are timed once).
"""
from __future__ import annotations

import contextlib
import os
import platform
import sys

import torch
import torch.nn.functional as F
from torch import nn

from .. import backends
from .._deprecated import moved_to
from ..models.registry import canonical_name, get_model, model_spec
from .counts import CONVENTION, count_ops
from . import int8 as int8_bench
from .cost_table import load_table as load_cost_table
from .energy import load_energy_table
from .latency import time_interleaved

# Small enough that a CPU finishes a few timed rounds of each in seconds.
BATCH = {"lenet5_bn": 32, "resnet20": 32, "resnet32": 32, "vgg_small": 8, "resnet18": 2, "resnet50": 1,
         "tinynet": 64}
# The reference backend (unfold + broadcast) is timed by default only below this many adder taps
# per batch: above it one call takes seconds. Naming it in --backends times it anyway.
REFERENCE_TAPS_LIMIT = 2e8
MEMORY_METHOD = {
    "cuda": "torch.cuda.max_memory_allocated during one call, minus what was allocated before it",
    "cpu": "peak of the running sum of the allocations and frees that torch.profiler(profile_memory=True) "
           "records during one call (tensors alive before it, weights and input, not included)",
}


class BenchError(ValueError):
    """A request that cannot run (unknown model, unavailable backend, bad table); said before any work."""


def check_backends(spec: str, device: str) -> list[str]:
    names = [b.strip() for b in spec.split(",") if b.strip()]
    for be in names:
        if be not in backends.REGISTRY:
            raise BenchError(f"unknown backend {be!r}; choose from {', '.join(backends.REGISTRY)}")
        why = backends.why_unavailable(be) or backends.descriptor(be).why_not_on(device)
        if why is not None:
            raise BenchError(f"backend {be!r} is not available: {why}")
    return names


def resolve_backends(spec: str | None, device: str, adder_taps: float) -> tuple[list[str], list[str]]:
    """The adder backends to time and notes on those left out. ``spec`` None picks them."""
    notes = []
    if spec:
        return check_backends(spec, device), notes
    names = []
    for be in backends.available():
        d = backends.descriptor(be)
        if device in d.emulated():
            notes.append(f"{be}: left out on {device.upper()} (the emulator is for tests); name it in --backends "
                         "to time it")
        elif d.why_not_on(device):
            notes.append(f"{be}: {d.why_not_on(device)}")
        elif not d.fast and names and adder_taps > REFERENCE_TAPS_LIMIT:
            notes.append(f"{be}: skipped, {adder_taps:.3g} adder taps per batch > {REFERENCE_TAPS_LIMIT:.0e} "
                         "(slow); name it in --backends to time it")
        else:
            names.append(be)
    return names, notes


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto logs every profiler start and stop on the C stderr; keep it off the tables."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory(fn, device: str) -> int | None:
    """Bytes allocated at the peak of one call of ``fn`` beyond what was allocated before it."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:  # the raw kineto events: their own timestamps order allocations and frees exactly
        raw = prof.profiler.kineto_results.events()
    except AttributeError:  # a torch whose profiler does not expose them: say so rather than guess
        return None
    events = sorted((e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]")
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak


def _with_backend(be: str | None, fn):
    if be is None:
        return fn

    def run():
        with backends.use_backend(be):
            return fn()
    return run


def model_fns(model: nn.Module, x: torch.Tensor, classes: int):
    """(inference, training step) closures for one model."""
    target = torch.randint(0, classes, (x.shape[0],), device=x.device)
    # A small lr keeps the weights (and so the kernels' speed) where they started.
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def fwd():
        model.eval()
        with torch.no_grad():
            model(x)

    def train():
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        opt.step()
    return fwd, train


def _layer_fns(m: nn.Module, shape: tuple, device: str):
    x = torch.randn(shape, device=device)
    xg = x.clone().requires_grad_()
    with torch.no_grad():
        g = torch.randn_like(m(x))

    def fwd():
        with torch.no_grad():
            m(x)

    def train():
        xg.grad = None
        m.zero_grad(set_to_none=True)
        m(xg).backward(g)
    return fwd, train


def _timing_dict(t) -> dict:
    return {"median_ms": t.median * 1e3, "spread": t.spread, "samples": len(t.samples)}


def _time(cands: dict, opts: dict, cuda: bool) -> dict:
    return {k: _timing_dict(v) for k, v in time_interleaved(cands, cuda=cuda, **opts).items()}


def _layer_key(m: nn.Module, in_shape) -> tuple:
    return (type(m).__name__, tuple(in_shape), m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, m.bias is not None)


def _time_layers(models: dict, rows: list[dict], batch: int, names: list[str], device: str, opts: dict,
                 show_progress: bool = False) -> None:
    """Times each layer that differs between the kinds, once per distinct shape."""
    from .._progress import progress

    opts = {**opts, "repeats": 2 * opts["repeats"]}  # one layer is cheap, and more rounds damp the noise
    mods = {k: dict(m.named_modules()) for k, m in models.items()}
    cache: dict[tuple, dict] = {}
    for row in progress(rows, show_progress, "timing layers"):
        if not row["timed"]:
            continue
        path = row["name"].split("#")[0]
        layer = {k: mods[k][path] for k in models}
        in_shape = (batch, *row["in_shape"][1:])
        key = tuple(_layer_key(m, in_shape) for m in layer.values())
        if key not in cache:
            cands = {"fwd": {}, "train": {}}
            for kind, m in layer.items():
                for be in (names if kind == "adder" else [None]):
                    fwd, train = _layer_fns(m, in_shape, device)
                    cands["fwd"][be or "conv"] = _with_backend(be, fwd)
                    cands["train"][be or "conv"] = _with_backend(be, train)
            cache[key] = {mode: _time(c, opts, device == "cuda") for mode, c in cands.items()}
        row["latency"] = cache[key]


def _merge_layers(counts: dict) -> list[dict]:
    """One row per weight layer, both kinds side by side (the kinds share their layout)."""
    kinds = list(counts)
    per_kind = {k: counts[k].weight_layers() for k in kinds}
    rows = []
    for i, first in enumerate(per_kind[kinds[0]]):
        row = {"name": first.name, "in_shape": list(first.in_shape), "out_shape": list(first.out_shape)}
        for k in kinds:
            r = per_kind[k][i]
            row[k] = {"type": r.type, "mults": r.mults, "adds": r.adds, "abs": r.abs, "taps": r.taps}
        types = {row[k]["type"] for k in kinds}
        # Both kinds: time the layers that differ (the others are the same module in both).
        # One kind: time its conv-like layers, for absolute times.
        row["timed"] = len(types) > 1 if len(kinds) > 1 else first.type in ("conv", "adder")
        rows.append(row)
    return rows


def machine() -> dict:
    from ..machine import cpu_flags, cpu_model
    from .._version import __version__

    return {"cpu": cpu_model(), "simd": cpu_flags(), "python": platform.python_version(), "torch": torch.__version__,
            "addernet": __version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def bench_model(name: str, kind: str = "both", batch_size: int | None = None, device: str = "cpu",
                backends_spec: str | None = None, dtype: str = "float32", energy_table: str | None = None,
                threads: int | None = None, latency: bool = True, fold_bn: bool = False, repeats: int = 5,
                warmup: int = 1, max_seconds: float = 30.0, layer_latency: bool = True,
                input_size: tuple | None = None, progress: bool = True, cost_tables: tuple = ()) -> dict:
    """Counts, energy and (unless ``latency=False``) latency and memory of one model; JSON-ready dict.
    ``progress``: a bar over the per-layer timing, when stderr is a terminal.

    ``cost_tables``: more per-operation cost tables (shipped names such as 'via_nano_2000', or JSON
    paths; see ``addernet.bench.cost_table``), each priced in ``dtype`` over the whole model and over
    its weight layers (the paper's counting) under ``result['costs'][table name]``."""
    try:
        name = canonical_name(name)
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    if kind not in ("adder", "conv", "both"):
        raise BenchError(f"kind must be adder, conv or both, got {kind!r}")
    if device not in ("cpu", "cuda"):
        raise BenchError(f"device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("device cuda asked for, but torch sees no CUDA GPU")
    for arg, value, least in (("batch_size", batch_size, 1), ("threads", threads, 1), ("repeats", repeats, 1),
                              ("warmup", warmup, 0)):
        if value is not None and (not isinstance(value, int) or value < least):
            raise BenchError(f"{arg} must be a whole number of at least {least}, got {value!r}")
    if not max_seconds > 0:  # NaN too
        raise BenchError(f"max_seconds must be above 0, got {max_seconds!r}")
    spec = model_spec(name)
    if input_size is not None and spec.fixed_size and tuple(input_size)[1:] != spec.input_size[1:]:
        h, w = spec.input_size[1:]  # said now, before any work
        raise BenchError(f"{name} takes {h}x{w} images only (input CxHxW = Cx{h}x{w}), "
                         f"got {'x'.join(map(str, input_size))}")
    table = load_energy_table(energy_table)
    table.entry(dtype)  # an unknown dtype fails now
    extra = [load_cost_table(t) for t in cost_tables]
    for t in extra:
        t.entry(dtype)
    if backends_spec:
        check_backends(backends_spec, device)
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        result = _bench(name, kind, batch_size, device, backends_spec, dtype, table, latency, fold_bn,
                        dict(repeats=repeats, warmup=warmup, max_seconds=max_seconds), layer_latency, input_size,
                        progress)
        result["costs"] = {t.name: price(t, result["counts"], dtype) for t in extra}
        return result
    finally:
        torch.set_num_threads(saved_threads)  # a library call must not leave the process changed


def _bench(name, kind, batch_size, device, backends_spec, dtype, table, latency, fold_bn, opts, layer_latency,
           input_size, progress) -> dict:
    kinds = ["conv", "adder"] if kind == "both" else [kind]
    spec = model_spec(name)
    chw = tuple(input_size or spec.input_size)
    batch = BATCH[name] if batch_size is None else batch_size
    classes = spec.num_classes
    torch.manual_seed(0)
    models = {k: get_model(name, kind=k, num_classes=classes, in_channels=chw[0]) for k in kinds}
    counts = {k: count_ops(m, (1, *chw), fold_bn=fold_bn) for k, m in models.items()}
    adder_taps = counts["adder"].totals(("adder",))["taps"] * batch if "adder" in counts else 0
    names, backend_notes = resolve_backends(backends_spec, device, adder_taps) if "adder" in kinds else ([], [])
    notes = backend_notes if latency else []  # which backends were left out matters only when timing
    result = {
        "model": name, "kinds": kinds, "input_shape": list(chw), "batch_size": batch, "device": device,
        "threads": torch.get_num_threads(), "dtype": dtype, "fold_bn": fold_bn, "convention": CONVENTION,
        "energy_citation": table.citation(dtype), "backends": names, "notes": notes, "machine": machine(),
        "counts": {}, "layers": _merge_layers(counts), "latency": None, "memory": None,
    }
    for k, c in counts.items():
        totals = c.totals()
        by_type = {t: c.totals((t,)) for t in dict.fromkeys(r.type for r in c.layers)}
        result["counts"][k] = {"totals": totals, "by_type": by_type, "uncounted": c.uncounted,
                               "energy_uJ": table.energy_pj(totals, dtype) / 1e6,
                               "weight_layers": c.totals(("conv", "adder", "linear"))}
        if c.uncounted:
            notes.append(f"{k}: not counted (no rule for them): {', '.join(c.uncounted)}")
    qmodel = None
    if "adder" in models:
        why = int8_bench.int8_unavailable_reason(device)
        if why is None:
            qmodel = int8_bench.int8_model(models["adder"], chw, batch)
            result["int8"] = int8_bench.int8_counts(qmodel, chw, table, fold_bn)
        else:
            result["int8"] = {"skipped": why}
    if not latency:
        return result
    result["latency_setup"] = {**opts, "timer": "CUDA events" if device == "cuda" else "time.perf_counter",
                               "memory_method": MEMORY_METHOD[device], "dtype": "float32"}
    x = torch.randn(batch, *chw, device=device)
    fns = {"fwd": {}, "train": {}}
    for k, m in models.items():
        m.to(device)
        fwd, train = model_fns(m, x, classes)
        for be in (names if k == "adder" else [None]):
            fns["fwd"][be or "conv"] = _with_backend(be, fwd)
            fns["train"][be or "conv"] = _with_backend(be, train)
    try:  # one training step first: a batch BatchNorm cannot train on is the request's fault, said once
        fns["train"]["conv" if "conv" in models else names[0]]()
    except ValueError as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        raise BenchError(f"batch size {batch} (--batch-size): {name}'s BatchNorm sees one value per channel in a "
                         "training step; use 2 or more") from None
    result["latency"] = {mode: _time(c, opts, device == "cuda") for mode, c in fns.items()}
    if qmodel is not None:
        def int8_fwd():
            with torch.no_grad():
                qmodel(x)
        # Its own interleaved run against the CNN, so that the float tables keep their columns.
        cands = {"int8": int8_fwd, **({"conv": fns["fwd"]["conv"]} if "conv" in fns["fwd"] else {})}
        result["int8"]["latency"] = _time(cands, opts, False)
    result["memory"] = {mode: {k: peak_memory(fn, device) for k, fn in c.items()} for mode, c in fns.items()}
    if layer_latency:
        _time_layers(models, result["layers"], batch, names, device, opts, progress)
    return result


def price(table, counts: dict, dtype: str) -> dict:
    """One cost table over ``bench_model``'s counts: per kind, the whole model and its weight layers."""
    return {"unit": table.unit, "citation": table.citation(dtype),
            "per_kind": {k: {"total": table.cost(c["totals"], dtype), "weight_layers": table.cost(c["weight_layers"], dtype)}
                         for k, c in counts.items()}}


# The `addernet bench` flags moved to the CLI layer (addernet.cli.bench); these names stay one release.
__getattr__ = moved_to("addernet.cli.bench", __name__, ("DESCRIPTION", "add_arguments", "add_parser", "run"))
