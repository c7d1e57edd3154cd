"""Running a method's CLI (``python -m methods.<name> ...``) in a subprocess from the repository
root, one thread, as the second-version chunk tests do."""
import os
import subprocess
import sys

from helpers.paths import ROOT


def run_method(module_argv, *args, timeout):
    """``python -m *module_argv *args``; the CompletedProcess with text stdout and stderr."""
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", *module_argv, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def quick_tune_and_choose(cli, tmp_path):
    """A method's quick tuning chunk (conv, seed 100) and its ``--merge`` into a choice, each
    checked to succeed, the chunk to say it is too small; returns the choice JSON's path."""
    tune, choice = tmp_path / "t.json", tmp_path / "c.json"
    r = cli("--phase", "tune", "--quick", "--kind", "conv", "--seeds", "100", "--json", str(tune))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "too small to test the claim" in r.stdout
    r = cli("--phase", "tune", "--merge", str(tune), "--json", str(choice))
    assert r.returncode == 0, r.stderr[-3000:]
    return choice
