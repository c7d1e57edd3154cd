"""Shared test setup.

Triton's interpreter must be switched on before triton is first imported, so it happens here,
ahead of any test module; on a machine with a GPU the real Triton kernels run instead.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


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
