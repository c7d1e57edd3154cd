"""Energy per inference from operation counts and a per-operation energy table.

The default table (``energy_45nm.json``) is Horowitz, ISSCC 2014, 45 nm. A user table is a JSON
file of the same schema::

    {"source": "where the numbers come from", "unit": "pJ",
     "ops": {"float32": {"add": 0.9, "mult": 3.7},
             "int8": {"add": 0.03, "mult": 0.2, "accumulate": "int32"}, "int32": {...}}}

Pricing: mults at ``mult``; additions, absolute values and comparisons at ``add`` (an abs is a
sign-bit clear and a comparison a subtraction: no dearer than an add, and the table has nothing
finer); accumulations at the ``add`` of the ``accumulate`` type when one is named (int8 products
and distances are summed in int32), else of the type itself.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

DEFAULT_TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "energy_45nm.json")


class EnergyTableError(ValueError):
    pass


@dataclass(frozen=True)
class EnergyTable:
    source: str
    ops: dict  # dtype -> {"add": pJ, "mult": pJ, optional "accumulate": dtype}
    path: str = ""

    def dtypes(self) -> list[str]:
        return list(self.ops)

    def entry(self, dtype: str) -> dict:
        if dtype not in self.ops:
            raise EnergyTableError(f"energy table {self.path or '(given)'} has no {dtype!r}; it has {', '.join(self.ops)}")
        return self.ops[dtype]

    def citation(self, dtype: str) -> str:
        e = self.entry(dtype)
        acc = e.get("accumulate")
        acc_s = f", accumulation in {acc} ({self.ops[acc]['add']} pJ/add)" if acc else ""
        return f"{dtype}: add {e['add']} pJ, mult {e['mult']} pJ{acc_s}; source: {self.source}"

    def energy_pj(self, counts: dict, dtype: str) -> float:
        """Energy in pJ of ``counts`` (a dict with mults, adds, abs, cmps, acc_adds) in ``dtype``."""
        e = self.entry(dtype)
        acc = self.ops[e["accumulate"]]["add"] if e.get("accumulate") else e["add"]
        plain_adds = counts["adds"] - counts.get("acc_adds", 0)
        return (counts["mults"] * e["mult"] + (plain_adds + counts.get("abs", 0) + counts.get("cmps", 0)) * e["add"]
                + counts.get("acc_adds", 0) * acc)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def validate(data, where: str = "energy table") -> EnergyTable:
    """Checks the schema and returns the table; every problem found is named in the error."""
    if not isinstance(data, dict):
        raise EnergyTableError(f"{where}: expected a JSON object with 'source', 'unit' and 'ops', got {type(data).__name__}")
    problems = []
    if not isinstance(data.get("source"), str) or not data["source"].strip():
        problems.append("'source' must be a non-empty string saying where the numbers come from")
    if data.get("unit", "pJ") != "pJ":
        problems.append(f"'unit' must be 'pJ', got {data.get('unit')!r}")
    ops = data.get("ops")
    if not isinstance(ops, dict) or not ops:
        problems.append("'ops' must be a non-empty object mapping a dtype name to {'add': pJ, 'mult': pJ}")
        ops = {}
    for dtype, e in ops.items():
        if not isinstance(e, dict):
            problems.append(f"ops[{dtype!r}] must be an object, got {type(e).__name__}")
            continue
        for key in ("add", "mult"):
            if not _number(e.get(key)):
                problems.append(f"ops[{dtype!r}][{key!r}] must be a non-negative number of pJ, got {e.get(key)!r}")
        acc = e.get("accumulate")
        if acc is not None and (not isinstance(acc, str) or acc not in ops):
            problems.append(f"ops[{dtype!r}]['accumulate'] must name another dtype of the table, got {acc!r}")
        extra = set(e) - {"add", "mult", "accumulate"}
        if extra:
            problems.append(f"ops[{dtype!r}] has unknown keys {sorted(extra)}")
    if problems:
        raise EnergyTableError(f"{where} is malformed:\n  - " + "\n  - ".join(problems))
    return EnergyTable(data["source"], ops, where)


def load_table(path: str | None = None) -> EnergyTable:
    """The table in ``path``, or the default 45 nm table."""
    path = path or DEFAULT_TABLE
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        raise EnergyTableError(f"cannot read energy table {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise EnergyTableError(f"energy table {path} is not valid JSON: {exc}") from exc
    return validate(data, path)
