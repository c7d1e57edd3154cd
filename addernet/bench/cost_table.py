"""Cost per inference from operation counts and a per-operation cost table (energy, cycles, ...).

One mechanism, several tables. Shipped (``SHIPPED``, by name or path):

- ``energy_45nm``: pJ per operation, Horowitz, ISSCC 2014, 45 nm (the default energy table);
- ``via_nano_2000``: cycles per operation on a VIA Nano 2000 CPU, as the AdderNet paper states them
  (float multiplication 4 cycles, addition 2), for its one speed figure.

A user table is a JSON file of the same schema::

    {"source": "where the numbers come from", "unit": "pJ",          # or "cycles"
     "ops": {"float32": {"add": 0.9, "mult": 3.7},
             "int8": {"add": 0.03, "mult": 0.2, "accumulate": "int32"}, "int32": {...}}}

Pricing: mults at ``mult``; additions at ``add``; absolute values at ``abs`` and comparisons at ``cmp``
when the entry names them, else at ``add`` (an abs is a sign-bit clear and a comparison a subtraction:
no dearer than an add; a table that knows better says so); accumulations at the ``add`` of the
``accumulate`` type when one is named (int8 products and distances are summed in int32), else of the
type itself.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = {"energy_45nm": os.path.join(HERE, "energy_45nm.json"),
           "via_nano_2000": os.path.join(HERE, "cycles_via_nano_2000.json")}
UNITS = ("pJ", "cycles")
_PRICES = ("add", "mult", "abs", "cmp")


class CostTableError(ValueError):
    pass


@dataclass(frozen=True)
class CostTable:
    source: str
    ops: dict  # dtype -> {"add", "mult", optional "abs", "cmp", "accumulate": dtype}
    path: str = ""
    unit: str = "pJ"

    @property
    def name(self) -> str:
        """The shipped name when this is a shipped table, else the file name without .json."""
        for name, path in SHIPPED.items():
            if self.path == path:
                return name
        return os.path.splitext(os.path.basename(self.path))[0] or "table"

    def dtypes(self) -> list[str]:
        return list(self.ops)

    def entry(self, dtype: str) -> dict:
        if dtype not in self.ops:
            raise CostTableError(f"cost table {self.path or '(given)'} has no {dtype!r}; it has {', '.join(self.ops)}")
        return self.ops[dtype]

    def citation(self, dtype: str) -> str:
        e, u = self.entry(dtype), self.unit
        acc = e.get("accumulate")
        acc_s = f", accumulation in {acc} ({self.ops[acc]['add']} {u}/add)" if acc else ""
        extra = "".join(f", {k} {e[k]} {u}" for k in ("abs", "cmp") if k in e)
        return f"{dtype}: add {e['add']} {u}, mult {e['mult']} {u}{extra}{acc_s}; source: {self.source}"

    def cost(self, counts: dict, dtype: str) -> float:
        """Cost in ``unit`` of ``counts`` (a dict with mults, adds, and optionally abs, cmps, acc_adds)."""
        e = self.entry(dtype)
        acc = self.ops[e["accumulate"]]["add"] if e.get("accumulate") else e["add"]
        plain_adds = counts["adds"] - counts.get("acc_adds", 0)
        return (counts["mults"] * e["mult"] + plain_adds * e["add"] + counts.get("abs", 0) * e.get("abs", e["add"])
                + counts.get("cmps", 0) * e.get("cmp", e["add"]) + counts.get("acc_adds", 0) * acc)

    def energy_pj(self, counts: dict, dtype: str) -> float:
        """``cost`` of an energy table (unit pJ); kept for callers of the energy-only API."""
        if self.unit != "pJ":
            raise CostTableError(f"cost table {self.path or '(given)'} is in {self.unit}, not pJ: use cost()")
        return self.cost(counts, dtype)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def validate(data, where: str = "cost table", unit: str | None = None) -> CostTable:
    """Checks the schema (and, given ``unit``, that the table is in it); every problem is named in the error."""
    if not isinstance(data, dict):
        raise CostTableError(f"{where}: expected a JSON object with 'source', 'unit' and 'ops', got {type(data).__name__}")
    problems = []
    if not isinstance(data.get("source"), str) or not data["source"].strip():
        problems.append("'source' must be a non-empty string saying where the numbers come from")
    got_unit = data.get("unit", "pJ")
    if got_unit not in UNITS:
        problems.append(f"'unit' must be one of {', '.join(map(repr, UNITS))}, got {got_unit!r}")
    elif unit is not None and got_unit != unit:
        problems.append(f"'unit' must be {unit!r} here, got {got_unit!r}")
    ops = data.get("ops")
    if not isinstance(ops, dict) or not ops:
        problems.append("'ops' must be a non-empty object mapping a dtype name to {'add': cost, 'mult': cost}")
        ops = {}
    for dtype, e in ops.items():
        if not isinstance(e, dict):
            problems.append(f"ops[{dtype!r}] must be an object, got {type(e).__name__}")
            continue
        for key in _PRICES:
            if (key in ("add", "mult") or key in e) and not _number(e.get(key)):
                problems.append(f"ops[{dtype!r}][{key!r}] must be a non-negative number of {got_unit}, got {e.get(key)!r}")
        acc = e.get("accumulate")
        if acc is not None and (not isinstance(acc, str) or acc not in ops):
            problems.append(f"ops[{dtype!r}]['accumulate'] must name another dtype of the table, got {acc!r}")
        extra = set(e) - {*_PRICES, "accumulate"}
        if extra:
            problems.append(f"ops[{dtype!r}] has unknown keys {sorted(extra)}")
    if problems:
        raise CostTableError(f"{where} is malformed:\n  - " + "\n  - ".join(problems))
    return CostTable(data["source"], ops, where, got_unit)


def load_table(path_or_name: str, unit: str | None = None) -> CostTable:
    """The table in a JSON file, or a shipped one by name (see ``SHIPPED``); ``unit`` checks its unit."""
    path = SHIPPED.get(path_or_name, path_or_name)
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        hint = "" if os.sep in str(path_or_name) else f" (shipped tables: {', '.join(SHIPPED)})"
        raise CostTableError(f"cannot read cost table {path}: {exc.strerror or exc}{hint}") from exc
    except json.JSONDecodeError as exc:
        raise CostTableError(f"cost table {path} is not valid JSON: {exc}") from exc
    return validate(data, path, unit)
