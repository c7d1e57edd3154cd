"""The uint8 adder op's integer reference and the kernel sets this CPU runs, for the int8 tests."""
import pytest
import torch
import torch.nn.functional as F

from addernet.backends.native.extension import native_available

needs_native = pytest.mark.skipif(not native_available(), reason="native extension not built")


def _isas():
    if not native_available():
        return []
    info = torch.ops.addernet._cpu_info()
    return info.split("supported=")[1].split()[0].split(",")


def kernel_sets():
    """(ISA, vector width) pairs: the AVX-512 build runs ymm and zmm loops."""
    return [(isa, vec) for isa in _isas() for vec in (("ymm", "zmm") if isa == "avx512" else ("",))]


def int_reference(x, w, zp, stride, padding, dilation, groups):
    """-sum |qx - qw| in int64, padded taps = zp, walking the kernel taps."""
    x, w = x.long(), w.long()
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    xp = F.pad(x, (padding[1], padding[1], padding[0], padding[0]), value=zp)
    y = torch.zeros(n, o, oh, ow, dtype=torch.long)
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        for u in range(kh):
            for v in range(kw):
                tap = xs[:, :, u * dilation[0]: u * dilation[0] + stride[0] * (oh - 1) + 1: stride[0],
                         v * dilation[1]: v * dilation[1] + stride[1] * (ow - 1) + 1: stride[1]]
                wt = w[g * og:(g + 1) * og, :, u, v]
                y[:, g * og:(g + 1) * og] -= (tap[:, None] - wt[None, :, :, None, None]).abs().sum(2)
    return y
