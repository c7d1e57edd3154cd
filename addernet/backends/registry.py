"""What a backend publishes about itself (``Backend``), and the helpers its one registry line uses.

A backend is a module or package under ``addernet/backends/`` whose ``BACKEND`` is a ``Backend``:
its name, whether it can run here and why not, the devices and dtypes its kernels take, and a
table of the ops it implements. The table is keyed by op name (``OPS`` lists the keys and their
call forms); every entry is optional: an op a backend lacks, or lacks on a device, runs on the
reference backend, which implements every op on every device (``addernet.backends.op``). A new
op is a new key, not a new contract.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

# The op keys and how each entry is called. conf = (stride, padding, dilation, groups), each pair
# a sequence of two ints.
OPS = {
    "adder_conv2d": "(x, w, *conf) -> y, differentiable with the paper's gradients (twice)",
    "adder_conv2d_exact": "(x, w, *conf) -> y, differentiable with sign gradients (grad_mode='exact')",
    "adder_conv2d_backward": "(g, x, w, *conf, output_mask) -> (gx, gw), the paper's gradients",
    "adder_conv2d_fused": "(x, w, scale, shift, *conf, relu) -> relu?(scale * y + shift), inference",
    "adder_conv2d_u8": "(qx, qw, zero_point, scale, shift, *conf, relu, *, out_scale, out_zero_point, "
                       "input_scale) -> int32 / float32 / uint8, inference",
    "adder_conv2d_tapsums": "an object with tapsum_output, tapsum_input and tapsum_weight (grad2.py)",
    "adder_linear": "(x (N, I), w (O, I)) -> y (N, O) = -sum_i |x - w|, differentiable with the paper's gradients",
}


def _runs_everywhere(device: str) -> str | None:
    return None


def _always() -> str | None:
    return None


@dataclass(frozen=True)
class Backend:
    """A backend's descriptor. Only ``name`` is required; the defaults describe a backend that runs
    everywhere and implements nothing (so every op falls back to the reference)."""

    name: str
    # op key (see OPS) -> function. Entries are optional.
    ops: Mapping[str, Callable] = field(default_factory=dict)
    # None when the backend can run in this process, else why not (shown to users as is).
    why_unavailable: Callable[[], str | None] = _always
    # device type -> the dtypes its kernels take there; a device type it never runs on is absent.
    dtypes: Mapping[str, tuple[torch.dtype, ...]] = field(default_factory=dict)
    # For a device type in ``dtypes``: None when it runs there here and now, else why not (a build
    # without CUDA kernels, no GPU).
    device_check: Callable[[str], str | None] = _runs_everywhere
    # Ops that run on fewer device types than the backend does: key -> device types.
    op_devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Device types it runs on only through an emulator (tests); benchmarks leave those out unless named.
    emulated: Callable[[], tuple[str, ...]] = tuple
    # Chosen by default when available (the first such in registry order).
    auto: bool = False
    # False for a definition rather than a fast path: benchmarks time it by default only on small work.
    fast: bool = True
    # (label, text) lines for `addernet info`: what was built, which kernels run.
    info: Callable[[], list[tuple[str, str]]] = list
    # (input size, weight size, stride, padding, dilation, groups) -> the kernel variant it runs for
    # that layer, for benchmark tables; None when it has one kernel.
    algorithm: Callable[..., str] | None = None

    def implements(self, key: str, device: str | None = None) -> bool:
        """Whether the table has ``key`` for tensors on ``device`` (a device type; None: any)."""
        if key not in self.ops:
            return False
        only = self.op_devices.get(key)
        return only is None or device is None or device in only

    def why_not_on(self, device: str) -> str | None:
        """None when it runs on tensors of device type ``device`` here and now, else why not."""
        if device not in self.dtypes:
            return f"backend {self.name!r} does not run on {device} (only on {', '.join(self.dtypes) or 'nothing'})"
        return self.device_check(device)

    def devices(self) -> tuple[str, ...]:
        """The device types it runs on here and now."""
        return tuple(d for d in self.dtypes if self.why_not_on(d) is None)


def compose_fused(conv: Callable) -> Callable:
    """An ``adder_conv2d_fused`` entry built from a backend's ``adder_conv2d``: the epilogue in torch
    ops after the convolution (three passes over the output where a kernel would make one)."""

    def fused(x, w, scale, shift, stride, padding, dilation, groups, relu):
        y = conv(x, w, stride, padding, dilation, groups)
        if scale is not None:
            y = y * scale.view(1, -1, 1, 1)
        if shift is not None:
            y = y + shift.view(1, -1, 1, 1)
        return torch.relu(y) if relu else y

    return fused


def linear_via_conv2d(conv: Callable) -> Callable:
    """An ``adder_linear`` entry built from a backend's ``adder_conv2d``: (N, I) and (O, I) viewed as
    1x1 images and filters (no copy), so the linear layer runs on the convolution's kernels and
    inherits their gradients, fake kernels and double backward."""

    def linear(x, w):
        y = conv(x.view(*x.shape, 1, 1), w.view(*w.shape, 1, 1), (1, 1), (0, 0), (1, 1), 1)
        return y.view(y.shape[:2])

    return linear


def eager(module: str) -> Callable[[], Backend]:
    """Registry entry of a backend imported with addernet (one that registers ops with torch)."""
    mod = importlib.import_module(module, __package__)
    return lambda: mod.BACKEND


def lazy(module: str) -> Callable[[], Backend]:
    """Registry entry of a backend imported on first use. An ImportError (a missing dependency)
    makes it an unavailable backend that says why."""
    cache: list[Backend] = []

    def load() -> Backend:
        if not cache:
            name = module.lstrip(".")
            try:
                cache.append(importlib.import_module(module, __package__).BACKEND)
            except ImportError as exc:
                why = f"{exc.name or name} is not importable ({exc})"
                cache.append(Backend(name, why_unavailable=lambda: why))
        return cache[0]

    return load
