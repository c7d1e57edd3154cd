"""One run of the GPU check (benchmarks/bench_gpu.py): a backend's ops against the float64
definition (``op_check``), then the adder op against cuDNN layer by layer (``vs_cudnn``), into one
result (written as JSON) and one markdown table. On the CPU it is the dry run: the same code on
the 'tiny' shapes, whose times are no measurement."""
from __future__ import annotations

import json
import os
import traceback
from typing import Callable, Mapping

import torch

from .. import backends
from .model_bench import resolve_backends
from .op_check import check_ops
from .vs_cudnn import markdown, time_layers


def why_not(backend: str, device: str) -> str | None:
    """None when ``backend`` runs on ``device`` here, else a line saying why not."""
    why = backends.why_unavailable(backend) or backends.descriptor(backend).why_not_on(device)
    return None if why is None else f"backend {backend!r} unavailable on {device}: {why}"


def backends_to_time(first: str, device: str, log: Callable[[str], None] = print) -> tuple[list[str], dict]:
    """(the backends to time, ``first`` leading when it runs here; those left out, with why)."""
    names, notes = resolve_backends(None, device, 0)
    log(f"backends timed: {names}" + "".join(f"; {n}" for n in notes))
    left_out = dict(n.split(": ", 1) for n in notes)  # each note is 'backend: why'
    left_out.update({be: "unavailable" for be in backends.REGISTRY if be not in names and be not in left_out})
    return [first] * (first in names) + [be for be in names if be != first], left_out


def run(backend: str, device: str, device_name: str, out: str, sets, *, budget_s: float, reps: int, target_ms: float,
        backward_variants: Mapping[str, Mapping[str, str]] | None = None, correctness: bool = True,
        timing: bool = True, log: Callable[[str], None] = print) -> bool:
    """Writes ``out``/gpu_results.json (and gpu_results.md when timing); True when every check
    passed and every contender ran or was skipped for a stated reason."""
    dry = device != "cuda"
    result = dict(device=device_name, dry_run=dry, torch=torch.__version__, cuda=torch.version.cuda,
                  cudnn=None if dry else torch.backends.cudnn.version(), correctness=[], timings=[], problems=[])
    problem = why_not(backend, device)
    if problem:
        result["problems"].append(problem)
        log(problem)
    failed = bool(problem)
    if correctness and not failed:
        log("== correctness (float64 CPU definition" + (", NaN-poisoned allocator)" if not dry else ")"))
        try:
            result["correctness"] = check_ops(backend, device, log, backward_variants)
        except Exception:
            result["problems"].append("correctness pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
        bad = [r for r in result["correctness"] if not r["ok"]]
        log(f"correctness: {len(result['correctness']) - len(bad)} passed, {len(bad)} failed")
        failed |= bool(bad) or not result["correctness"]
    if timing:
        log("== timings" + (" (dry run: tiny shapes, not measurements)" if dry else ""))
        try:
            names, left_out = backends_to_time(backend, device, log)
            rows, problems = time_layers(names, left_out, sets, device, budget_s, reps, target_ms,
                                         backward_variants if names[:1] == [backend] else None, log)
            result["timings"] = rows
            result["problems"] += problems
            failed |= bool(problems)
        except Exception:
            result["problems"].append("timing pass crashed:\n" + traceback.format_exc())
            log(result["problems"][-1])
            failed = True
        table = markdown(result["timings"], device_name, peak_of=backend)
        with open(os.path.join(out, "gpu_results.md"), "w") as f:
            f.write(table)
        log(table)
    with open(os.path.join(out, "gpu_results.json"), "w") as f:
        json.dump(result, f, indent=1, default=str)
    for p in result["problems"]:
        log(f"problem: {p}")
    return not failed
