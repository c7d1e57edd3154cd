"""What this machine is: CPU model and SIMD flags, for benchmark reports and ``addernet info``."""
from __future__ import annotations

import platform

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
