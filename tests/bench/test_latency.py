"""addernet.bench.latency.time_interleaved on a fake clock: the order of the calls, the samples,
and samples many calls long (sample_seconds), which the GPU driver relies on for microsecond ops."""
import pytest

from addernet.bench.latency import MAX_CALLS_PER_SAMPLE, time_interleaved


class FakeClock:
    """Time moves only when a candidate runs: each call of a candidate lasts its own cost."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def __call__(self):
        return self.now

    def candidate(self, name, cost):
        def run():
            self.calls.append(name)
            self.now += cost
        return run


def test_interleaved_rounds_rotate_and_time_each_call():
    clock = FakeClock()
    out = time_interleaved({"a": clock.candidate("a", 0.002), "b": clock.candidate("b", 0.005)},
                           repeats=3, warmup=1, clock=clock)
    assert clock.calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up, then a rotated order
    assert out["a"].samples == pytest.approx([0.002] * 3) and out["b"].samples == pytest.approx([0.005] * 3)


def test_sample_seconds_times_many_calls_and_reports_seconds_per_call():
    clock = FakeClock()
    out = time_interleaved({"fast": clock.candidate("fast", 1e-4), "slow": clock.candidate("slow", 0.1)},
                           repeats=4, warmup=0, clock=clock, sample_seconds=0.002)
    # One call each to size the samples, then 20 calls of 'fast' per sample and 1 of 'slow'.
    assert clock.calls.count("fast") == 1 + 4 * 20 and clock.calls.count("slow") == 1 + 4
    assert out["fast"].samples == pytest.approx([1e-4] * 4) and out["slow"].samples == pytest.approx([0.1] * 4)


def test_a_sample_is_at_most_max_calls_long():
    clock = FakeClock()
    time_interleaved({"tiny": clock.candidate("tiny", 1e-9)}, repeats=2, warmup=0, clock=clock, sample_seconds=1.0)
    assert clock.calls.count("tiny") == 1 + 2 * MAX_CALLS_PER_SAMPLE
