"""The native backend: the C++/CUDA extension ``addernet._C``, reached through the dispatcher as
``torch.ops.addernet``.

- extension.py: loads the build once and remembers why it failed, if it did;
- ops.py: the float ops' wrappers, each beside its fake kernel and autograd registration;
- ops_u8.py: the uint8 inference op's fake kernel;
- checks.py: the C++ argument checks again in Python, for the fake kernels.
"""
from __future__ import annotations

import torch

from ..registry import Backend, linear_via_conv2d
from . import checks, extension

_table = {}
if extension.native_available():
    from . import ops, ops_u8

    _table = {
        "adder_conv2d": ops.adder_conv2d,
        "adder_conv2d_exact": ops.adder_conv2d_exact,
        "adder_conv2d_backward": ops.adder_conv2d_backward,
        "adder_conv2d_fused": ops.adder_conv2d_fused,
        "adder_conv2d_u8": torch.ops.addernet.adder_conv2d_u8,
        "adder_conv2d_tapsums": ops.TAP_SUMS,
        "adder_linear": linear_via_conv2d(ops.adder_conv2d),
    }


def _why_unavailable() -> str | None:
    if extension.native_available():
        return None
    return f"the native extension cannot load: {extension.NATIVE_ERROR}; {extension.build_hint()}"


def _why_not_on(device: str) -> str | None:
    if device == "cuda" and not extension.cuda_built():
        return "the native extension was built without its CUDA kernels"
    return None


def _info() -> list[tuple[str, str]]:
    if not extension.native_available():
        return []
    return [("native cpu", torch.ops.addernet._cpu_info()),
            ("native cuda", "built" if extension.cuda_built() else "not built"),
            ("build config", torch.ops.addernet._build_info())]


def _algorithm(input_size, weight_size, stride, padding, dilation, groups) -> str:
    """The CPU kernels' patch algorithms for a layer, 'forward/input-gradient'."""
    return torch.ops.addernet._cpu_algorithms(list(input_size), list(weight_size), list(stride), list(padding),
                                              list(dilation), groups)


BACKEND = Backend(
    name="native",
    ops=_table,
    why_unavailable=_why_unavailable,
    dtypes={device: allowed for device, (allowed, _) in checks.DEVICE_DTYPES.items()},
    device_check=_why_not_on,
    op_devices={"adder_conv2d_u8": ("cpu",)},
    auto=True,
    info=_info,
    algorithm=_algorithm if extension.native_available() else None,
)
