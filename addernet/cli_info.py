"""`addernet info`: what is installed, what was built, and what this CPU can run."""
from __future__ import annotations

import platform

import torch

from . import _extension, backends
from ._version import __version__

_SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
         "avx512_vnni", "amx_bf16", "asimd", "sve")


def cpu_flags() -> list[str]:
    """The SIMD extensions this CPU reports that matter to the kernels (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return [flag for flag in _SIMD if flag in have]
    except OSError:
        pass
    return []


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    for name in backends.ALL:
        why = backends.why_unavailable(name)
        lines.append(f"  {name:<10}  {'available' if why is None else 'unavailable: ' + why}")
    if _extension.native_available():
        lines.append(f"native cpu    {torch.ops.addernet._cpu_info()}")
        lines.append(f"native cuda   {'built' if _extension.cuda_built() else 'not built'}")
        lines.append(f"build config  {torch.ops.addernet._build_info()}")
    lines.append(f"default       {backends.current()}")
    return lines
