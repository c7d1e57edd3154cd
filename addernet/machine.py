"""What this machine is: CPU model and SIMD flags, for benchmark reports and ``addernet info``."""
from __future__ import annotations

import platform

_SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
         "avx512_vnni", "amx_bf16", "asimd", "sve")


def cpuinfo_field(name: str) -> str | None:
    """The first value of ``name`` ('model name', 'cpu family', 'flags') in Linux /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> list[str]:
    """The SIMD extensions this CPU reports that matter to the kernels (Linux /proc/cpuinfo)."""
    have = set((cpuinfo_field("flags") or cpuinfo_field("Features") or "").split())
    return [flag for flag in _SIMD if flag in have]


def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or platform.machine()
