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
