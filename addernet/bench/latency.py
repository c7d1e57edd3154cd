"""Fair timing: candidates run interleaved in one process, and a ratio of medians is reported.

Interleaving (ABCABC... rather than AAA...BBB...) spreads drifts in clock speed and cache state
over every candidate alike. CUDA work is timed with device events, not the host clock.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)  # seconds

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Half the interquartile range, relative to the median."""
        if len(self.samples) < 4:
            return 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / 2 / self.median


def _time_once(fn: Callable[[], object], cuda: bool, clock: Callable[[], float] = time.perf_counter,
               calls: int = 1) -> float:
    """Seconds per call of ``calls`` back-to-back calls of ``fn``."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / calls
    t0 = clock()
    for _ in range(calls):
        fn()
    return (clock() - t0) / calls


# A sample of a fast op is many calls long (sample_seconds), but never more calls than this.
MAX_CALLS_PER_SAMPLE = 50


def _calls_for(fn: Callable[[], object], cuda: bool, clock, sample_seconds: float | None) -> int:
    if not sample_seconds:
        return 1
    once = _time_once(fn, cuda, clock)
    return max(1, min(MAX_CALLS_PER_SAMPLE, int(sample_seconds / max(once, 1e-6))))


def time_interleaved(
    candidates: dict[str, Callable[[], object]],
    repeats: int = 7,
    warmup: int = 1,
    cuda: bool = False,
    max_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sample_seconds: float | None = None,
) -> dict[str, Timing]:
    """Times each candidate ``repeats`` times, interleaved, after ``warmup`` untimed calls each.

    ``clock`` times host work: wall time by default; ``time.thread_time`` (the calling thread's CPU
    time, meaningful at 1 thread) is far less disturbed by other jobs on a shared machine.

    ``max_seconds`` stops early (keeping at least 3 rounds) when the slowest candidate would
    make the benchmark run too long.

    ``sample_seconds``: one sample repeats a candidate about this long (at most
    ``MAX_CALLS_PER_SAMPLE`` calls) and records the time per call: on a GPU a microsecond kernel
    timed alone measures the launch and the events, not the kernel.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    if cuda:
        torch.cuda.synchronize()
    calls = {name: _calls_for(fn, cuda, clock, sample_seconds) for name, fn in candidates.items()}
    out = {name: Timing() for name in candidates}
    names = list(candidates)
    start = time.perf_counter()
    for r in range(repeats):
        # Rotate the order each round so no candidate always runs right after the same one.
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].samples.append(_time_once(candidates[name], cuda, clock, calls[name]))
        if max_seconds is not None and r >= 2 and time.perf_counter() - start > max_seconds:
            break
    return out


def thread_note() -> str:
    return f"{torch.get_num_threads()} intra-op threads"
