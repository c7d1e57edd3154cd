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
