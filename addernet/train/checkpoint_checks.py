"""The structure of a training checkpoint, checked against the run before anything is loaded.

As safetensors checks its header before reading a byte of data: every field's type, range and
shape is compared with what this run expects (the model's state_dict, the optimiser's parameters,
this torch's RNG state size), and every problem found is reported, one line each, in one
``CheckpointError``. A checkpoint edited by hand (a negative epoch, a history that is a string, a
tensor of another shape) is refused with the reason instead of failing somewhere inside torch.
"""
from __future__ import annotations

import math
import random

import torch

from .checkpoint import CheckpointError

# The fields fit writes (see engine._state); the ones a run cannot resume without come first.
_REQUIRED = ("model", "config", "epoch", "history", "rng")
_MT_WORDS = 624  # numpy's and python's Mersenne Twister state: 624 words (+1 position for python)


def check_run_checkpoint(ck: dict, path: str, *, model=None, optimizer=None) -> None:
    """Raise ``CheckpointError`` listing every way ``ck`` (a loaded ``last.pt``) is not a checkpoint of
    this run: ``model``'s state_dict keys and shapes, ``optimizer``'s parameters. Silent if it fits."""
    problems = checkpoint_problems(ck, model=model, optimizer=optimizer)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise CheckpointError(f"checkpoint {path} does not fit this run ({len(problems)} "
                              f"problem{'s' * (len(problems) > 1)}):\n{lines}")


def config_mismatch(path: str, saved: dict, run_config: dict, must_match) -> None:
    """Raise ``CheckpointError`` if the checkpoint's config differs from this run's in a field of ``must_match``."""
    diff = [k for k in must_match if saved.get(k) != run_config.get(k)]
    if diff:
        raise CheckpointError(f"{path} was trained with a different " + ", ".join(
            f"{k} ({saved.get(k)!r}, now {run_config.get(k)!r})" for k in diff))


def checkpoint_problems(ck: dict, *, model=None, optimizer=None) -> list[str]:
    """Every structural problem of ``ck``, one sentence each ([] if none)."""
    missing = [k for k in _REQUIRED if k not in ck]
    if missing:
        return [f"it is not a training run's: no {', '.join(missing)}"]
    out: list[str] = []
    epoch = ck["epoch"]
    if not _is_int(epoch) or epoch < 0:
        out.append(f"epoch is {epoch!r}: must be a whole number of at least 0")
    if "global_step" in ck and (not _is_int(ck["global_step"]) or ck["global_step"] < 0):
        out.append(f"global_step is {ck['global_step']!r}: must be a whole number of at least 0")
    if not isinstance(ck["config"], dict):
        out.append(f"config is a {type(ck['config']).__name__}, not a dict")
    out += _history_problems(ck["history"], epoch if _is_int(epoch) else None)
    out += _rng_problems(ck["rng"])
    out += _model_problems(ck["model"], model)
    out += _optimizer_problems(ck.get("optimizer"), optimizer)
    for key in ("scheduler", "scaler"):
        if ck.get(key) is not None and not isinstance(ck[key], dict):
            out.append(f"{key} is a {type(ck[key]).__name__}, not a state dict")
    resumed = ck.get("resumed_at", [])
    if not (isinstance(resumed, list) and all(_is_int(e) and 0 <= e for e in resumed)):
        out.append(f"resumed_at is {resumed!r}: must be a list of epochs (whole numbers of at least 0)")
    if "extra" in ck and not (isinstance(ck["extra"], dict) and all(isinstance(v, dict) for v in ck["extra"].values())):
        out.append("extra is not a dict of state dicts")
    return out


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _history_problems(history, epoch) -> list[str]:
    if not isinstance(history, list):
        return [f"history is a {type(history).__name__}, not a list of per-epoch dicts"]
    out = []
    bad = [i for i, row in enumerate(history) if not isinstance(row, dict)]
    if bad:
        out.append(f"history rows {bad[:5]} are not dicts")
    for i, row in enumerate(history):
        if not isinstance(row, dict):
            continue
        wrong = [k for k, v in row.items() if not (v is None or isinstance(v, (int, float, str)))]
        if wrong:
            out.append(f"history row {i} has non-numeric values for {', '.join(map(str, wrong[:5]))}")
        if row.get("epoch") != i + 1:
            out.append(f"history row {i} says epoch {row.get('epoch')!r}, expected {i + 1}")
            break
    if epoch is not None and len(history) != epoch:
        out.append(f"history holds {len(history)} epochs but epoch is {epoch}")
    return out


def _tensor_problem(name, t, dtype, numel) -> list[str]:
    if not isinstance(t, torch.Tensor):
        return [f"{name} is a {type(t).__name__}, not a tensor"]
    if t.dtype != dtype or t.numel() != numel:
        return [f"{name} is a {t.dtype} tensor of {t.numel()} values, expected {dtype} of {numel}"]
    return []


def _rng_problems(rng) -> list[str]:
    if not isinstance(rng, list) or not rng:
        return [f"rng is a {type(rng).__name__}{' (empty)' if isinstance(rng, list) else ''}, "
                f"not a list of per-rank RNG states"]
    torch_size = torch.get_rng_state().numel()
    py_words = len(random.getstate()[1])
    out = []
    for r, st in enumerate(rng):
        where = f"rng[{r}]"
        if not isinstance(st, dict) or not all(isinstance(st.get(k), dict) for k in ("numpy", "python")):
            out.append(f"{where} is not a dict with torch, numpy and python states")
            continue
        out += _tensor_problem(f"{where}.torch", st.get("torch"), torch.uint8, torch_size)
        n, p = st["numpy"], st["python"]
        out += _tensor_problem(f"{where}.numpy.keys", n.get("keys"), torch.int64, _MT_WORDS)
        pos = n.get("pos")
        if not _is_int(pos) or not 0 <= pos <= _MT_WORDS:
            out.append(f"{where}.numpy.pos is {pos!r}: must be a whole number in 0..{_MT_WORDS}")
        if n.get("kind") != "MT19937":
            out.append(f"{where}.numpy.kind is {n.get('kind')!r}, expected 'MT19937'")
        if not _is_int(n.get("has_gauss")) or not isinstance(n.get("cached_gaussian"), float):
            out.append(f"{where}.numpy has_gauss/cached_gaussian are not an int and a float")
        out += _tensor_problem(f"{where}.python.internal", p.get("internal"), torch.int64, py_words)
        if not _is_int(p.get("version")):
            out.append(f"{where}.python.version is {p.get('version')!r}, not an int")
        g = p.get("gauss_next")
        if g is not None and not (isinstance(g, float) and math.isfinite(g)):
            out.append(f"{where}.python.gauss_next is {g!r}, not None or a finite float")
        cuda = st.get("cuda")
        if cuda is not None and not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                                                   for t in cuda)):
            out.append(f"{where}.cuda is not a list of uint8 tensors")
    return out


def _model_problems(saved, model) -> list[str]:
    if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
        return [f"model is a {type(saved).__name__}, not a state_dict"]
    out = [f"model[{k!r}] is a {type(v).__name__}, not a tensor" for k, v in saved.items()
           if not isinstance(v, torch.Tensor)]
    if model is None:
        return out
    want = model.state_dict()
    missing, unknown = [k for k in want if k not in saved], [k for k in saved if k not in want]
    if missing:
        out.append(f"model lacks {len(missing)} of this model's tensors: {', '.join(missing[:4])}"
                   f"{' ...' if len(missing) > 4 else ''}")
    if unknown:
        out.append(f"model has {len(unknown)} tensors this model does not: {', '.join(unknown[:4])}"
                   f"{' ...' if len(unknown) > 4 else ''}")
    for k, ref in want.items():
        v = saved.get(k)
        if isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(ref.shape):
            out.append(f"model[{k!r}] has shape {tuple(v.shape)}, this model's is {tuple(ref.shape)}")
        elif isinstance(v, torch.Tensor) and v.is_floating_point() != ref.is_floating_point():
            out.append(f"model[{k!r}] is {v.dtype}, this model's is {ref.dtype}")
    return out


def _optimizer_problems(saved, optimizer) -> list[str]:
    if saved is None:
        return []
    if not (isinstance(saved, dict) and isinstance(saved.get("state"), dict)
            and isinstance(saved.get("param_groups"), list)):
        return ["optimizer is not a state dict with state and param_groups"]
    if optimizer is None:
        return []
    params = [p for g in optimizer.param_groups for p in g["params"]]
    counts = [len(g.get("params", ())) if isinstance(g, dict) else -1 for g in saved["param_groups"]]
    if counts != [len(g["params"]) for g in optimizer.param_groups]:
        return [f"optimizer has parameter groups of {counts} tensors, this run's has "
                f"{[len(g['params']) for g in optimizer.param_groups]}"]
    out = []
    for idx, st in saved["state"].items():
        if not _is_int(idx) or not 0 <= idx < len(params) or not isinstance(st, dict):
            out.append(f"optimizer state entry {idx!r} names no parameter of this run")
            continue
        for name, v in st.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and tuple(v.shape) != tuple(params[idx].shape):
                out.append(f"optimizer state {idx}.{name} has shape {tuple(v.shape)}, "
                           f"its parameter's is {tuple(params[idx].shape)}")
    return out
