"""Energy per inference: the pJ case of ``cost_table`` (one mechanism for energy and cycle tables).

The default table (``energy_45nm.json``) is Horowitz, ISSCC 2014, 45 nm. A user table is a JSON
file of ``cost_table``'s schema with ``"unit": "pJ"``; see ``cost_table`` for the pricing rules
(abs and comparisons at the add price unless the table names them; int8 accumulates in int32).
"""
from __future__ import annotations

from .cost_table import SHIPPED, CostTable, CostTableError
from .cost_table import load_table as _load
from .cost_table import validate as _validate

DEFAULT_TABLE = SHIPPED["energy_45nm"]

# The energy-only names, kept: an energy table is a cost table in pJ.
EnergyTable = CostTable
EnergyTableError = CostTableError


def validate_energy_table(data, where: str = "energy table") -> CostTable:
    return _validate(data, where, unit="pJ")


def load_energy_table(path: str | None = None) -> CostTable:
    """The energy table in ``path`` (unit pJ), or the default 45 nm table."""
    return _load(path or DEFAULT_TABLE, unit="pJ")
