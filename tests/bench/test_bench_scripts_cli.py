"""A benchmark script's command-line mistake is one line and exit status 2, like the `addernet` CLI's,
before it imports or trains anything (control_random_labels.py read ``int(sys.argv[1])``: a
traceback for a missing or non-numeric seed)."""
import subprocess
import sys

import pytest

from helpers.paths import ROOT

SCRIPT = f"{ROOT}/benchmarks/clusterfit/control_random_labels.py"


@pytest.mark.parametrize("argv", [[], ["x"], ["-1"], ["0", "1"]], ids=["missing", "word", "negative", "two"])
def test_control_random_labels_says_a_bad_seed_in_one_line(argv):
    out = subprocess.run([sys.executable, SCRIPT, *argv], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and "control_random_labels.py: error:" \
        in out.stderr, out.stderr


def _bench_models():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_models_script", f"{ROOT}/benchmarks/bench_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--models", "nosuch"], ["--backends", "nosuch"],
                                  ["--out", "/proc/x.md"], ["--max-seconds", "nan"]],
                         ids=["threads", "models", "backends", "out", "max-seconds"])
def test_bench_models_says_a_mistake_in_one_line_before_any_model(argv, tmp_path, capsys, monkeypatch):
    """bench_models.py's mistakes were tracebacks (BenchError, KeyError), an unwritable --out one
    after every model had been benched."""
    script = _bench_models()
    monkeypatch.setattr(script, "bench_model", lambda *a, **k: pytest.fail("benched before the checks"))
    base = ["--models", "lenet5_bn", "--no-latency", "--out", str(tmp_path / "r.md")]
    try:
        rc = script.main(base + argv)
    except SystemExit as exc:  # argparse's type= checks exit from parse_args
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("bench_models.py: error: "), err


@pytest.mark.parametrize("argv", [["--out", "/proc/x"], ["--budget-s", "-1"], ["--reps", "0"], ["--target-ms", "nan"]],
                         ids=["out", "budget", "reps", "target"])
def test_bench_gpu_says_a_mistake_in_one_line(argv, capsys):
    """bench_gpu.py took a negative budget or 0 rounds, and an unwritable --out was a traceback."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu_script", f"{ROOT}/benchmarks/bench_gpu.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    try:
        rc = script.main(["--dry-run", *argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("bench_gpu.py: error: "), err
