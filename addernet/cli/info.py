"""`addernet info`: what is installed, what was built, and what this CPU can run."""
from __future__ import annotations

import platform

import torch

from .. import backends
from .._version import __version__
from ..machine import cpu_flags, cpu_model


def info_lines() -> list[str]:
    lines = [
        f"addernet      {__version__}",
        f"torch         {torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
        f"GPU {'yes: ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'})",
        f"python        {platform.python_version()} on {platform.machine()}",
    ]
    try:
        import triton

        lines.append(f"triton        {triton.__version__}")
    except ImportError:
        lines.append("triton        not installed")
    lines.append(f"cpu           {cpu_model()}")
    lines.append(f"simd flags    {' '.join(cpu_flags()) or 'unknown'}")
    lines.append(f"threads       {torch.get_num_threads()}")
    lines.append("backends:")
    for name in backends.REGISTRY:
        why = backends.why_unavailable(name)
        lines.append(f"  {name:<10}  {'available' if why is None else 'unavailable: ' + why}")
    for name in backends.REGISTRY:
        if backends.why_unavailable(name) is None:
            lines += [f"{label:<13} {text}" for label, text in backends.descriptor(name).info()]
    lines.append(f"default       {backends.current()}")
    return lines
