"""One 2-process gloo job under torchrun, for the tests that check a run across DDP ranks."""
import os
import signal
import socket
import subprocess
import sys

import pytest

from helpers.paths import ROOT, TESTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(args, *, timeout: float, cwd=None) -> str:
    """Runs ``torchrun --nproc_per_node=2 ARGS`` on loopback and returns its output; fails the test
    on a non-zero exit or after ``timeout`` seconds, killing the workers with the launcher."""
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, TESTS, os.environ.get("PYTHONPATH", "")]))
    # A static rendezvous on 127.0.0.1: --standalone's c10d store may advertise a hostname that a
    # sandbox cannot resolve.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", *args]
    # Own session, so that a hung run can be killed with its workers, not just the launcher.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail("torchrun timed out:\n" + log[-3000:])
    assert proc.returncode == 0, log[-5000:]
    return log
