"""benchmarks/bench_gpu.py runs only where a GPU is: its --dry-run runs every step of it on the CPU,
so that a change to addernet.bench (shapes, candidates, timing, the reference) which breaks the
script fails here, in CI, before a GPU machine finds it. The dry run's times are not checked: they
are not measurements."""
import json
import os
import sys

import pytest
import torch

from helpers.paths import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_gpu  # noqa: E402

from addernet.backends.native import extension  # noqa: E402
from addernet.bench import op_check  # noqa: E402
from addernet.bench.shapes import CHECK_SHAPES, LAYER_SETS  # noqa: E402

pytestmark = pytest.mark.skipif(not extension.native_available(), reason="the native extension is not built")


def _cudnn_flags():
    return tuple(getattr(getattr(torch.backends.cudnn, part, None), "fp32_precision", None)
                 for part in ("conv", "rnn")), torch.backends.cudnn.allow_tf32


def _result(out):
    return json.loads((out / "gpu_results.json").read_text())


def test_dry_run_checks_every_shape_and_times_every_contender(tmp_path, capsys):
    threads = torch.get_num_threads()
    flags = _cudnn_flags()
    assert bench_gpu.main(["--dry-run", "--out", str(tmp_path)]) == 0
    assert torch.get_num_threads() == threads  # main() leaves the process as it found it
    assert _cudnn_flags() == flags  # a conv flag left apart from the RNN one breaks torch.export later
    res = _result(tmp_path)
    assert res["dry_run"] is True and res["problems"] == []
    checks = res["correctness"]
    # 2 CPU dtypes x every check shape x (forward, fused, channels_last, 2 x 2 gradients, masks)
    assert len(checks) == 2 * len(CHECK_SHAPES) * 8
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    assert {c["shape"] for c in checks} == {s.name for s in CHECK_SHAPES}
    timed = {(r["layer"], r["pass_"], r["contender"]) for r in res["timings"] if "ms" in r}
    for s in LAYER_SETS["tiny"]():
        for contender in ("cudnn fp32", "cudnn tf32", "native", "reference", "cdist p=1"):
            assert (s.name, "fwd", contender) in timed
        for contender in ("cudnn fp32", "cudnn tf32", "native wgrad=cudnn", "native wgrad=kernel", "reference"):
            assert (s.name, "fwd+bwd", contender) in timed
    assert all(r["ms"] > 0 and r["vs_cudnn_fp32"] > 0 for r in res["timings"] if "ms" in r)
    # Triton is not timed on a CPU: a row says why rather than a blank.
    assert all(r["skipped"] for r in res["timings"] if r["contender"] == "triton")
    assert {r["layer"] for r in res["timings"] if r["contender"] == "triton"} == {s.name for s in LAYER_SETS["tiny"]()}
    table = (tmp_path / "gpu_results.md").read_text()
    assert table.count("| tiny |") == len(LAYER_SETS["tiny"]()) and "ERROR" not in table
    assert "bench_gpu: ok" in capsys.readouterr().out


def test_a_wrong_result_fails_the_check(tmp_path, monkeypatch):
    right = op_check.expected

    def off_by_a_little(*args):
        want = right(*args)
        y, scale = want["y"]
        want["y"] = (y + 0.05 * (scale + 1), scale)  # above the float32 and bfloat16 tolerances (2 x 1e-2)
        return want

    monkeypatch.setattr(op_check, "expected", off_by_a_little)
    assert bench_gpu.main(["--dry-run", "--skip-bench", "--out", str(tmp_path)]) == 1
    failed = {(c["check"], c["dtype"]) for c in _result(tmp_path)["correctness"] if not c["ok"]}
    assert failed == {(what, dt) for what in ("forward", "forward channels_last") for dt in ("float32", "bfloat16")}


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_without_a_gpu_it_says_so_and_exits_2(tmp_path, capsys):
    assert bench_gpu.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().out
