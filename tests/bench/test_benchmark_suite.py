"""The pytest-benchmark suite in benchmarks/ runs once here, one round on tiny shapes, so that it
cannot rot: every comparison is a group holding its baseline and candidates, each with the shapes,
the machine and the interleaved harness's ratio in extra_info, in the JSON a user would get. The
times themselves are not checked (tiny shapes, a shared machine): no claim rests on them."""
import json
import os
import subprocess
import sys

import pytest

from addernet.backends.native import extension
from helpers.paths import ROOT


@pytest.fixture(scope="module")
def suite_json(tmp_path_factory):
    if not extension.native_available():
        pytest.skip("the native extension is not built")
    pytest.importorskip("pytest_benchmark")  # requirements-dev.txt pins it: CI runs this
    out = tmp_path_factory.mktemp("suite") / "bench.json"
    # Not the xdist worker's variables: the inner pytest would take itself for a worker, and
    # pytest-benchmark switches itself off under xdist.
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}, "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                        "--bench-size", "tiny", "--bench-threads", "1", "--benchmark-min-rounds=1",
                        "--benchmark-max-time=0", "--benchmark-warmup=off", f"--benchmark-json={out}"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def _groups(data):
    groups = {}
    for b in data["benchmarks"]:
        groups.setdefault(b["group"], {})[b["extra_info"]["candidate"]] = b
    return groups


def test_every_comparison_is_a_group_with_its_baseline(suite_json):
    groups = _groups(suite_json)
    ops = [g for g in groups if g.startswith("op ")]
    assert len(ops) == 2 * 2  # the two tiny shapes, forward and forward + backward
    for g in ops:
        assert {"conv", "native", "reference"} <= set(groups[g]), g
    for mode in ("inference", "train_step"):
        assert {"conv", "native", "reference"} <= set(groups[f"model {mode} lenet5_bn, batch 2"])
    assert set(groups["int8 inference lenet5_bn, batch 2"]) == {"torch_int8_cnn", "adder_int8", "cnn_f32"}


def test_extra_info_holds_shapes_machine_and_the_interleaved_ratio(suite_json):
    for b in suite_json["benchmarks"]:
        info = b["extra_info"]
        assert b["stats"]["rounds"] >= 1 and b["stats"]["median"] > 0
        assert info["machine"]["threads"] == 1 and info["machine"]["cpu"] and info["machine"]["torch"]
        assert ("shape" in info) if b["group"].startswith("op ") else ("input_shape" in info and info["batch"] == 2)
        ratio = info["interleaved"][f"ratio_to_{info['baseline']}"]
        assert ratio > 0 and info["interleaved"]["rounds"] == 1
        if info["candidate"] == info["baseline"]:
            assert ratio == 1.0
    shape = next(b for b in suite_json["benchmarks"] if b["group"].startswith("op "))["extra_info"]["shape"]
    assert {"batch", "cin", "cout", "size", "kernel", "stride", "padding"} <= set(shape)
