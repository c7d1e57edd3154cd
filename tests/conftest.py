"""Shared test setup.

Triton's interpreter must be switched on before triton is first imported, so it happens here,
ahead of any test module; on a machine with a GPU the real Triton kernels run instead.
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
