"""Triton backend: ``torch.ops.addernet.triton_adder_conv2d`` and its backward.

On a GPU the ops are ``torch.library.triton_op``s, so torch.compile sees (and can fuse around)
the kernels instead of an opaque call. They run on CUDA tensors, or on CPU tensors when
``TRITON_INTERPRET=1`` was set before this module was first imported (slow; for tests; the ops
are then opaque custom ops, see ``_define``). The kernels are described in triton_kernels.py.
The backward op is differentiable (double backward, as IGAM needs): its vector-Jacobian products
(backends/grad2.py) take their convolution terms from aten and their hardtanh- and mask-weighted
tap sums from reference.py's chunked torch code, a composition rather than Triton kernels, so
the second-order step runs at the reference backend's speed for those terms. ``grad_mode="exact"``
is the op ``triton_adder_conv2d_exact``, built the same way.

Weight gradient alternative: sum G*X is exactly conv2d's weight gradient, so
``weight_grad_via_convolution`` gets grad_W from cuDNN through aten.convolution_backward. The
Triton kernel stays the default so that the backend does not depend on cuDNN's choices
(TF32, nondeterministic algorithms); the alternative is kept for comparison and benchmarking.
"""
# No `from __future__ import annotations`: the op schemas are inferred from real annotations.
import functools
import os

import torch
import triton  # an ImportError here is how backends.available() learns that triton is missing

from .._validation import check_args, out_size
from . import grad2
from . import reference as _reference
from . import triton_kernels as _k
from .registry import Backend, compose_fused

_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)

# The kernels index with int32; a tensor with more elements than this is refused, not wrapped.
INDEX_LIMIT = 2**31 - 1

# Weight-gradient split of the N*OH*OW reduction: enough programs to fill a GPU, each with at
# least _MIN_P_PER_SPLIT positions, and float32 partials capped at _MAX_PARTIAL elements.
_MIN_P_PER_SPLIT = 1024
_TARGET_PROGRAMS = 1024
_MAX_PARTIAL = 1 << 24

_NO_GPU = (
    "no CUDA GPU; set TRITON_INTERPRET=1 to run the Triton kernels on CPU tensors "
    "(slow, for testing)"
)


def status() -> tuple[bool, str]:
    if _k.INTERPRET or torch.cuda.is_available():
        return True, ""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False, (
            "TRITON_INTERPRET=1 was set after the Triton kernels were defined; set it before "
            "importing addernet (or triton) to run them on CPU tensors"
        )
    return False, _NO_GPU


def _check_tensors(**tensors: torch.Tensor) -> None:
    devices = {t.device for t in tensors.values()}
    if len(devices) > 1:
        where = ", ".join(f"{k} on {t.device}" for k, t in tensors.items())
        raise RuntimeError(f"triton adder_conv2d: tensors must share one device, got {where}")
    device = devices.pop()
    if device.type != "cuda" and not _k.INTERPRET:
        raise RuntimeError(
            f"triton adder_conv2d: got {device} tensors; the Triton kernels need CUDA tensors "
            "(or TRITON_INTERPRET=1 set before importing addernet, to run them on the CPU)"
        )
    for name, t in tensors.items():
        if t.dtype not in _SUPPORTED:
            raise TypeError(
                f"triton adder_conv2d: {name} is {t.dtype}; the triton backend supports "
                "float32, float16 and bfloat16 (use backend='native' or 'reference' for others)"
            )


def check_index_range(**sizes: int) -> None:
    """Refuse any tensor whose elements int32 offsets cannot all address."""
    for name, numel in sizes.items():
        if numel > INDEX_LIMIT:
            raise ValueError(
                f"triton adder_conv2d: {name} has {numel} elements, more than the {INDEX_LIMIT} "
                "that the kernels' 32-bit indexing can address; split the batch or use "
                "backend='native'"
            )


def _geometry(x, weight, stride, padding, dilation):
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    oh = out_size(h, kh, stride[0], padding[0], dilation[0])
    ow = out_size(w, kw, stride[1], padding[1], dilation[1])
    return n, c, h, w, o, cg, kh, kw, oh, ow


def _prepare(x, weight, stride, padding, dilation, groups, **extra):
    check_args(x, weight, None, tuple(stride), tuple(padding), tuple(dilation), groups)
    _check_tensors(input=x, weight=weight, **extra)
    # The kernels assume NCHW-contiguous memory; channels_last and strided views are copied.
    return x.contiguous(), weight.contiguous()


def _weight_grad_splits(p_total: int, o: int, k: int) -> int:
    tiles = triton.cdiv(o, 64) * triton.cdiv(k, 64)
    s = min(
        triton.cdiv(p_total, _MIN_P_PER_SPLIT),
        max(1, _TARGET_PROGRAMS // tiles),
        max(1, _MAX_PARTIAL // max(1, o * k)),
    )
    return max(1, s)


def _is_fake(t) -> bool:
    from torch._subclasses.fake_tensor import is_fake

    return t.device.type == "meta" or is_fake(t)


class _FakeAwareLaunch:
    def __init__(self, kernel):
        self.kernel = kernel

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            if not any(isinstance(a, torch.Tensor) and _is_fake(a) for a in args):
                self.kernel[grid](*args, **kwargs)

        return run


def _launch(kernel):
    wrap = getattr(torch.library, "wrap_triton", None)
    if wrap is None or _k.INTERPRET:
        # wrap_triton hands interpreted kernels back unwrapped, and torch<2.6 has no wrap_triton:
        # either way a fake-tensor pass (opcheck, tracing) would reach the kernel, so skip it there.
        return _FakeAwareLaunch(kernel)
    return wrap(kernel)


def _define(name: str, fn, use_triton_op: bool = True):
    """Register ``fn`` as the op ``name``: a triton_op, else an opaque custom_op.

    The custom_op serves torch < 2.6 (no triton_op) and the interpreter: torch.compile would
    trace a triton_op into its kernels, which the interpreter cannot hand to it (wrap_triton
    leaves interpreted kernels unwrapped), so the traced graph would silently lose them.
    """
    lib = torch.library
    traceable = hasattr(lib, "triton_op") and hasattr(lib, "wrap_triton") and not _k.INTERPRET
    if use_triton_op and traceable:
        return torch.library.triton_op(name, mutates_args=())(fn)
    # The launcher doubles as the fake kernel because its launches skip fake tensors.
    op = torch.library.custom_op(name, mutates_args=())(fn)
    op.register_fake(fn)
    return op


def _dot_in_float32(dtype) -> bool:
    # Triton 3.x's interpreter multiplies bfloat16 tl.dot operands as raw bits: upcast there.
    return dtype == torch.float32 or (_k.INTERPRET and dtype == torch.bfloat16)


def _conv_args(stride, padding, dilation):
    return (stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1])


def _forward(
    input: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
) -> torch.Tensor:
    x, w = _prepare(input, weight, stride, padding, dilation, groups)
    n, c, h, wd, o, cg, kh, kw, oh, ow = _geometry(x, w, stride, padding, dilation)
    y = x.new_empty((n, o if c else 0, oh, ow))  # no input channels: (N, 0, OH, OW), as conv2d
    check_index_range(input=x.numel(), weight=w.numel(), output=y.numel())
    if y.numel() == 0:
        return y
    og, p_total, k_total = o // groups, n * oh * ow, cg * kh * kw

    def grid(meta):
        return (triton.cdiv(p_total, meta["BLOCK_P"]), groups * triton.cdiv(og, meta["BLOCK_O"]))

    _launch(_k.adder_fwd_kernel)[grid](
        x, w, y, c, h, wd, oh, ow, cg, og, groups, kh, kw,
        *_conv_args(stride, padding, dilation), p_total, k_total,
    )
    return y


def _backward_impl(
    grad_output: torch.Tensor,
    input: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(grad_input, grad_weight); a masked-out one is an empty tensor, as in the native op."""
    x, w = _prepare(input, weight, stride, padding, dilation, groups, grad_output=grad_output)
    n, c, h, wd, o, cg, kh, kw, oh, ow = _geometry(x, w, stride, padding, dilation)
    if tuple(grad_output.shape) != (n, o if c else 0, oh, ow):
        raise ValueError(
            f"triton adder_conv2d backward: grad_output has shape {tuple(grad_output.shape)}, "
            f"expected {(n, o if c else 0, oh, ow)}"
        )
    g = grad_output.to(x.dtype).contiguous()  # tl.dot needs G and X in one dtype
    og, p_total, k_total = o // groups, n * oh * ow, cg * kh * kw
    check_index_range(input=x.numel(), weight=w.numel(), grad_output=g.numel())
    conv = _conv_args(stride, padding, dilation)

    gx = x.new_empty((0,))
    if output_mask[0]:
        gx = x.new_zeros(x.shape) if g.numel() == 0 else x.new_empty(x.shape)
        if g.numel() != 0:
            q_total = n * h * wd

            def grid_x(meta):
                rows = triton.cdiv(q_total, meta["BLOCK_Q"])
                return (rows, groups * triton.cdiv(cg, meta["BLOCK_C"]))

            _launch(_k.adder_grad_input_kernel)[grid_x](
                g, x, w, gx, h, wd, oh, ow, cg, og, groups, kh, kw, *conv, q_total,
            )

    gw = w.new_empty((0,))
    if output_mask[1]:
        if g.numel() == 0:
            gw = w.new_zeros(w.shape)
        else:
            splits = _weight_grad_splits(p_total, o, k_total)
            per_split = triton.cdiv(p_total, splits)
            splits = triton.cdiv(p_total, per_split)  # no empty trailing split
            part = x.new_empty((splits, o, k_total), dtype=torch.float32)
            check_index_range(weight_grad_partials=part.numel())

            def grid_w(meta):
                cols = groups * triton.cdiv(og, meta["BLOCK_O"])
                return (cols, triton.cdiv(k_total, meta["BLOCK_K"]), splits)

            _launch(_k.adder_grad_weight_kernel)[grid_w](
                g, x, w, part, c, h, wd, oh, ow, cg, og, groups, kh, kw, *conv,
                p_total, k_total, per_split, DOT_F32=_dot_in_float32(x.dtype),
            )
            gw = part.sum(0).to(w.dtype).view(w.shape)
    return gx, gw


triton_adder_conv2d = _define("addernet::triton_adder_conv2d", _forward)
triton_adder_conv2d_backward = _define("addernet::triton_adder_conv2d_backward", _backward_impl)
grad2.register_first_order_autograd(triton_adder_conv2d, triton_adder_conv2d_backward)
grad2.register_backward_autograd(triton_adder_conv2d_backward, _reference)
triton_adder_conv2d_exact = grad2.define_exact(
    "addernet::triton_adder_conv2d_exact",
    lambda *args: torch.ops.addernet.triton_adder_conv2d(*args),
    _reference,
)


def weight_grad_via_convolution(grad_output, x, weight, stride, padding, dilation, groups):
    """The alternative grad_W = conv2d weight gradient(X, G) - W * sum G (see module doc)."""
    _, gw, _ = torch.ops.aten.convolution_backward(
        grad_output, x, weight, None, list(stride), list(padding), list(dilation),
        False, [0, 0], groups, [False, True, False],
    )
    return gw - weight * grad_output.sum((0, 2, 3)).view(-1, 1, 1, 1)


def adder_conv2d(x, weight, stride, padding, dilation, groups, grad_mode="paper"):
    ok, why = status()
    if not ok:
        raise RuntimeError(f"addernet backend 'triton' is not available: {why}")
    op = torch.ops.addernet.triton_adder_conv2d_exact if grad_mode == "exact" else torch.ops.addernet.triton_adder_conv2d
    return op(
        x, weight, list(stride), list(padding), list(dilation), groups
    )


def _backward(grad_output, x, weight, stride, padding, dilation, groups, output_mask):
    return torch.ops.addernet.triton_adder_conv2d_backward(
        grad_output.contiguous(), x, weight, list(stride), list(padding), list(dilation), groups, list(output_mask))


def _why_unavailable() -> str | None:
    ok, why = status()
    return None if ok else why


def _why_not_on(device: str) -> str | None:
    if device == "cuda":
        return None if torch.cuda.is_available() else _NO_GPU
    if device == "cpu":
        return None if _k.INTERPRET else "the Triton kernels run on CPU tensors only under TRITON_INTERPRET=1"
    return None


BACKEND = Backend(
    name="triton",
    ops={
        "adder_conv2d": adder_conv2d,
        "adder_conv2d_exact": functools.partial(adder_conv2d, grad_mode="exact"),
        "adder_conv2d_backward": _backward,
        "adder_conv2d_fused": compose_fused(adder_conv2d),
    },
    why_unavailable=_why_unavailable,
    dtypes={"cuda": _SUPPORTED, "cpu": _SUPPORTED},
    device_check=_why_not_on,
    emulated=lambda: ("cpu",) if _k.INTERPRET else (),
)
