"""Shared test setup.

Triton's interpreter must be switched on before triton is first imported, so it happens here,
ahead of any test module; on a machine with a GPU the real Triton kernels run instead.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Under pytest-xdist (make test runs one worker per core) each worker gets its share of the cores,
# and so do the processes it starts (CLI runs, torchrun jobs): with every worker's OpenMP pool as
# wide as the machine, their spinning threads would fight over the same cores.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    _share = str(max(1, (os.cpu_count() or 1) // _workers))
    os.environ.setdefault("OMP_NUM_THREADS", _share)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Opt in per module with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`: on a shared
# 2-core machine OpenMP's spinning threads make tiny ops many times slower, and faiss's far more.
@pytest.fixture(scope="module")
def one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def one_faiss_thread():
    try:
        import faiss
    except ImportError:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run first. make test runs pytest-xdist with work stealing, which evens
    out everything except a long test that a worker starts last; started first, the others fill
    in around it. The sort is stable: every other test keeps pytest's order."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
