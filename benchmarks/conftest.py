"""The pytest-benchmark suite: ``pytest benchmarks/ --benchmark-only`` (see benchmarks/README.md).

Each comparison (one layer shape in one pass, one model in one mode, one int8 model) is one
benchmark group: its baseline and each adder candidate are benchmarks of that group, with the
shapes, the machine and the thread count in ``extra_info``. pytest-benchmark times a candidate's
rounds one after another; the project's claims rest on the interleaved harness
(``addernet.bench.latency.time_interleaved``: candidates in turn, medians, one process), so each
group also runs that harness once and records its ratio to the baseline in ``extra_info['interleaved']``:
both figures sit in one JSON (``--benchmark-json``).

Options of this suite:
  --bench-size paper|tiny   paper: the paper's layer shapes and models (default); tiny: every
                            benchmark on tiny shapes and one interleaved round, for CI (no claims)
  --bench-threads N         torch intra-op threads (default 2)
  --bench-repeats N         rounds of the interleaved harness (default 7)
"""
from __future__ import annotations

import os
import platform

import pytest
import torch

from addernet.bench.model_bench import machine
from suite import SIZES, Groups, Setup, setup_of


def pytest_configure(config):
    if not config.pluginmanager.hasplugin("benchmark"):
        raise pytest.UsageError("the benchmark suite needs pytest-benchmark: pip install -r requirements-dev.txt")


def pytest_addoption(parser):
    g = parser.getgroup("addernet benchmarks")
    g.addoption("--bench-size", choices=sorted(SIZES), default="paper",
                help="paper: the paper's shapes and models; tiny: tiny shapes, one interleaved round (CI)")
    g.addoption("--bench-threads", type=int, default=2, help="torch intra-op threads (default 2)")
    g.addoption("--bench-repeats", type=int, default=7, help="rounds of the interleaved harness (default 7)")


@pytest.fixture(scope="session")
def bench_setup(request) -> Setup:
    s = setup_of(request.config)
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    yield s
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def machine_info(bench_setup) -> dict:
    return {**machine(), "device": bench_setup.device, "threads": bench_setup.threads, "platform": platform.platform(),
            "load_average_1min": os.getloadavg()[0]}


@pytest.fixture(scope="session")
def groups(bench_setup) -> Groups:
    return Groups(bench_setup)


@pytest.fixture
def compare(benchmark, bench_setup, groups, machine_info):
    """``compare(group, build, baseline, name, **info)``: benchmarks candidate ``name`` of ``group``
    (``build()`` makes the group's {name: closure} once) and records the interleaved ratio."""

    def run(group: str, build, baseline: str, name: str, **info):
        fn = groups.get(group, build)[name]
        benchmark.group = group
        benchmark.extra_info.update(info)
        benchmark.extra_info.update(candidate=name, baseline=baseline, machine=machine_info)
        if bench_setup.device == "cuda":
            # pytest-benchmark reads the host clock: the GPU's queue must be empty when it does.
            def timed(fn=fn):
                fn()
                torch.cuda.synchronize()
        else:
            timed = fn
        benchmark(timed)
        it = groups.ratios(group, baseline)
        benchmark.extra_info["interleaved"] = {
            "harness": "addernet.bench.latency.time_interleaved (candidates in turn, medians)",
            "clock": "CUDA events" if bench_setup.device == "cuda" else "time.perf_counter (wall)", **it[name]}
    return run
