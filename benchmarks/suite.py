"""The pytest-benchmark suite's pieces that its test modules import (benchmarks/conftest.py has
the options and fixtures): the sizes it runs, the run's setup, and the groups of candidates."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from addernet.bench.latency import time_interleaved
from addernet.bench.model_bench import resolve_backends

# The sizes, per suite size: (layer set, batch) for the ops, (model, batch) for the models.
SIZES = {
    "paper": dict(op_sets=(("resnet20", 32), ("lenet5_bn", 256), ("resnet18", 8)),
                  models=(("lenet5_bn", 32), ("resnet20", 32))),
    "tiny": dict(op_sets=(("tiny", 2),), models=(("lenet5_bn", 2),)),
}


@dataclass(frozen=True)
class Setup:
    size: str
    threads: int
    repeats: int
    device: str

    @property
    def tiny(self) -> bool:
        return self.size == "tiny"

    def adder_backends(self, taps: float) -> list[str]:
        """The adder backends worth timing here (the rules of ``addernet bench``: no Triton
        interpreter on a CPU, no reference above its tap limit)."""
        return resolve_backends(None, self.device, taps)[0]


def setup_of(config) -> Setup:
    threads, repeats = config.getoption("--bench-threads"), config.getoption("--bench-repeats")
    if threads < 1 or repeats < 1:
        raise pytest.UsageError(f"--bench-threads and --bench-repeats must be at least 1, got {threads}, {repeats}")
    size = config.getoption("--bench-size")
    return Setup(size, threads, 1 if size == "tiny" else repeats, "cuda" if torch.cuda.is_available() else "cpu")


class Groups:
    """One comparison's candidates, built once and shared by its benchmarks and its interleaved run."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.candidates: dict[str, dict] = {}
        self.interleaved: dict[str, dict] = {}

    def get(self, group: str, build) -> dict:
        if group not in self.candidates:
            self.candidates[group] = build()
        return self.candidates[group]

    def ratios(self, group: str, baseline: str) -> dict:
        """The interleaved harness over the group's candidates, run once: medians and ratios to ``baseline``."""
        if group not in self.interleaved:
            # max_seconds: the reference backend takes seconds a call at the paper's shapes; at
            # least 3 rounds run whatever the limit.
            t = time_interleaved(self.candidates[group], repeats=self.setup.repeats, warmup=0 if self.setup.tiny else 1,
                                 cuda=self.setup.device == "cuda", max_seconds=None if self.setup.tiny else 20.0)
            base = t[baseline].median
            self.interleaved[group] = {
                name: {"median_s": v.median, "spread": v.spread, "rounds": len(v.samples),
                       f"ratio_to_{baseline}": v.median / base} for name, v in t.items()}
        return self.interleaved[group]


def case_id(*parts) -> str:
    """A test id that ``-k`` can match word by word: 'resnet20-16to32at32_3x3s2-b32-fwd-native'."""
    text = "-".join(str(p) for p in parts)
    for old, new in (("->", "to"), ("@", "at"), ("/", "s"), (" ", "_"), (",", ""), (":", "")):
        text = text.replace(old, new)
    return text
