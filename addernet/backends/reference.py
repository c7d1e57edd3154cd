"""Pure-PyTorch adder convolution: the definition the fast backends are checked against.

It unfolds patches (im2col) and evaluates the L1 distance by broadcasting, in chunks of
batch and positions so that the temporary never exceeds ``_CHUNK_ELEMS`` elements. The backward is
written with differentiable torch ops, so a double backward (as IGAM needs) works through it.

The three tap sums at the bottom (``tapsum_output``/``_input``/``_weight``) are the pieces the
other backends' second-order gradients and ``grad_mode="exact"`` are made of; here they are the
same differentiable torch ops, so the triton backend composes its double backward from them.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .grad2 import engine_will_use
from .registry import Backend, compose_fused, linear_via_conv2d

# Upper bound on the broadcast temporary (elements): 32M float32 = 128 MiB.
_CHUNK_ELEMS = 1 << 25


def _unfold(x, kernel, stride, padding, dilation):
    return F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)


def _chunks(n: int, per_item: int):
    step = max(1, _CHUNK_ELEMS // max(1, per_item))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def _l1_forward(xcol: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """xcol (N, K, L), w (O, K) -> -sum_k |xcol - w| as (N, O, L)."""
    n, k, l = xcol.shape
    o = w.shape[0]
    out = xcol.new_empty((n, o, l))
    for nb in _chunks(n, o * k * l):
        for lb in _chunks(l, o * k * (nb.stop - nb.start)):
            diff = xcol[nb, None, :, lb] - w[None, :, :, None]
            out[nb, :, lb] = -diff.abs().sum(2)
    return out


def _grad_xcol(g: torch.Tensor, xcol: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """sum_o G[n,o,p] * clamp(W[o,k] - xcol[n,k,p], -1, 1) as (N, K, L)."""
    n, k, l = xcol.shape
    o = w.shape[0]
    parts = []
    for nb in _chunks(n, o * k * l):
        row = []
        for lb in _chunks(l, o * k * (nb.stop - nb.start)):
            ht = (w[None, :, :, None] - xcol[nb, None, :, lb]).clamp(-1, 1)
            row.append((g[nb, :, None, lb] * ht).sum(1))
        parts.append(torch.cat(row, dim=2))
    return torch.cat(parts, dim=0) if parts else xcol.new_zeros(xcol.shape)


def _split(t: torch.Tensor, groups: int, dim: int):
    return t.chunk(groups, dim=dim) if groups > 1 else (t,)


def forward(x, weight, stride, padding, dilation, groups):
    n, _, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w_ + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if x.shape[1] == 0:  # no input channels: (N, 0, OH, OW), as conv2d (F.unfold refuses C = 0)
        return x.new_zeros((n, 0, oh, ow))
    xcol = _unfold(x, (kh, kw), stride, padding, dilation)
    outs = [
        _l1_forward(xc, wg.reshape(wg.shape[0], -1))
        for xc, wg in zip(_split(xcol, groups, 1), _split(weight, groups, 0))
    ]
    return torch.cat(outs, dim=1).view(n, o, oh, ow)


def backward(grad_out, x, weight, stride, padding, dilation, groups, need_input=True, need_weight=True):
    """The paper's gradients: HardTanh for the input, full precision for the weight."""
    n, c, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    if c == 0:  # both gradients are empty
        return (x.new_zeros(x.shape) if need_input else None), (weight.new_zeros(weight.shape) if need_weight else None)
    xcol = _unfold(x, (kh, kw), stride, padding, dilation)
    g = grad_out.reshape(n, o, xcol.shape[-1])
    gx_cols, gws = [], []
    for xc, wg, gg in zip(_split(xcol, groups, 1), _split(weight, groups, 0), _split(g, groups, 1)):
        w2 = wg.reshape(wg.shape[0], -1)
        if need_weight:
            # sum_{n,p} G*(X - W) = G @ Xcol^T - W * sum(G): a matmul, no broadcast temporary.
            gw = torch.einsum("nop,nkp->ok", gg, xc) - w2 * gg.sum((0, 2))[:, None]
            gws.append(gw.view_as(wg))
        if need_input:
            gx_cols.append(_grad_xcol(gg, xc, w2))
    gx = gw_full = None
    if need_input:
        gx = F.fold(torch.cat(gx_cols, 1), (h, w_), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    if need_weight:
        gw_full = torch.cat(gws, 0)
    return gx, gw_full


def backward_exact(grad_out, x, weight, stride, padding, dilation, groups, need_input=True, need_weight=True):
    """The true gradients of the L1 form: sign(W - X) for the input, sign(X - W) for the weight
    (padded taps included: there X is 0)."""
    conf = (stride, padding, dilation, groups)
    gx = tapsum_input(grad_out, x, weight, *conf, "sign") if need_input else None
    gw = -tapsum_weight(grad_out, None, x, weight, *conf, "sign") if need_weight else None
    return gx, gw


class _AdderConv2dFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation, groups, grad_mode):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.grad_mode = grad_mode
        return forward(x, weight, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        fn = backward_exact if ctx.grad_mode == "exact" else backward
        gx, gw = fn(
            grad_out, x, weight, *ctx.conf,
            need_input=engine_will_use(ctx, 0), need_weight=engine_will_use(ctx, 1),
        )
        return gx, gw, None, None, None, None, None


def adder_conv2d(x, weight, stride, padding, dilation, groups, grad_mode="paper"):
    return _AdderConv2dFunction.apply(x, weight, stride, padding, dilation, groups, grad_mode)


# ---------------------------------------------------------------------------------------------
# Tap sums: with D = W - Xcol at every tap (Xcol = 0 at padded taps) and phi one of
# "hardtanh" (clamp(D, -1, 1)), "sign" (sign(D)) or "mask" (1[|D| < 1]).

def phi(d: torch.Tensor, fn: str) -> torch.Tensor:
    if fn == "hardtanh":
        return d.clamp(-1, 1)
    if fn == "sign":
        return d.sign()
    if fn == "mask":
        return (d.abs() < 1).to(d.dtype)
    raise ValueError(f"tap function must be 'hardtanh', 'sign' or 'mask', got {fn!r}")


def tapsum_output(a, b, x, weight, stride, padding, dilation, groups, fn):
    """out[n,o,p] = sum_k (Acol[n,k,p] + B[o,k]) * phi(W[o,k] - Xcol[n,k,p]), shaped like Y.

    ``a`` (shaped like X; None is 0) is zero at padded taps, ``b`` (shaped like W; None is 0) is not.
    """
    n, _, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    xcol = _unfold(x, (kh, kw), stride, padding, dilation)
    acol = _unfold(a, (kh, kw), stride, padding, dilation) if a is not None else None
    l_ = xcol.shape[-1]
    outs = []
    for gi, (xc, wg) in enumerate(zip(_split(xcol, groups, 1), _split(weight, groups, 0))):
        ac = _split(acol, groups, 1)[gi] if acol is not None else None
        bg = _split(b, groups, 0)[gi].reshape(wg.shape[0], -1) if b is not None else None
        w2 = wg.reshape(wg.shape[0], -1)
        k_ = w2.shape[1]
        out = xc.new_zeros((n, w2.shape[0], l_))
        for nb in _chunks(n, w2.shape[0] * k_ * l_):
            for lb in _chunks(l_, w2.shape[0] * k_ * (nb.stop - nb.start)):
                t = phi(w2[None, :, :, None] - xc[nb, None, :, lb], fn)
                coef = 0
                if ac is not None:
                    coef = ac[nb, None, :, lb]
                if bg is not None:
                    coef = coef + bg[None, :, :, None]
                out[nb, :, lb] = (coef * t).sum(2)
        outs.append(out)
    oh, ow = _out_hw(x, weight, stride, padding, dilation)
    return torch.cat(outs, 1).view(n, o, oh, ow)


def tapsum_input(grad_out, x, weight, stride, padding, dilation, groups, fn):
    """out[pixel] = sum over the (o, p) taps that read the pixel of G[n,o,p] * phi(W - X), shaped
    like X; padded taps read no pixel and drop out."""
    n, c, h, w_ = x.shape
    o, _, kh, kw = weight.shape
    xcol = _unfold(x, (kh, kw), stride, padding, dilation)
    g = grad_out.reshape(n, o, xcol.shape[-1])
    cols = []
    for xc, wg, gg in zip(_split(xcol, groups, 1), _split(weight, groups, 0), _split(g, groups, 1)):
        w2 = wg.reshape(wg.shape[0], -1)
        k_, l_ = w2.shape[1], xc.shape[-1]
        col = xc.new_zeros(xc.shape)
        for nb in _chunks(n, w2.shape[0] * k_ * l_):
            for lb in _chunks(l_, w2.shape[0] * k_ * (nb.stop - nb.start)):
                t = phi(w2[None, :, :, None] - xc[nb, None, :, lb], fn)
                col[nb, :, lb] = (gg[nb, :, None, lb] * t).sum(1)
        cols.append(col)
    return F.fold(torch.cat(cols, 1), (h, w_), (kh, kw), dilation=dilation, padding=padding, stride=stride)


def tapsum_weight(grad_out, a, x, weight, stride, padding, dilation, groups, fn):
    """out[o,k] = sum_{n,p} G[n,o,p] * Acol[n,k,p] * phi(W[o,k] - Xcol[n,k,p]), shaped like W.

    ``a`` None weighs every tap by 1, padded taps included (there X is 0)."""
    n = x.shape[0]
    o, _, kh, kw = weight.shape
    xcol = _unfold(x, (kh, kw), stride, padding, dilation)
    acol = _unfold(a, (kh, kw), stride, padding, dilation) if a is not None else None
    g = grad_out.reshape(n, o, xcol.shape[-1])
    outs = []
    for gi, (xc, wg, gg) in enumerate(zip(_split(xcol, groups, 1), _split(weight, groups, 0), _split(g, groups, 1))):
        ac = _split(acol, groups, 1)[gi] if acol is not None else None
        w2 = wg.reshape(wg.shape[0], -1)
        k_, l_ = w2.shape[1], xc.shape[-1]
        acc = w2.new_zeros(w2.shape)
        for nb in _chunks(n, w2.shape[0] * k_ * l_):
            for lb in _chunks(l_, w2.shape[0] * k_ * (nb.stop - nb.start)):
                t = phi(w2[None, :, :, None] - xc[nb, None, :, lb], fn) * gg[nb, :, None, lb]
                if ac is not None:
                    t = t * ac[nb, None, :, lb]
                acc = acc + t.sum((0, 3))
        outs.append(acc.view_as(wg))
    return torch.cat(outs, 0)


def _out_hw(x, weight, stride, padding, dilation):
    kh, kw = weight.shape[2:]
    return (
        (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1,
        (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1,
    )


def adder_conv2d_u8(input, weight, zero_point, scale, shift, stride, padding, dilation, groups, relu=False,
                    out_scale=None, out_zero_point=0, input_scale=None):
    """The uint8 inference op (``torch.ops.addernet.adder_conv2d_u8``) in int64 torch, its definition.

    acc = sum |qx - qw| with padded taps holding ``zero_point``; the output is int32 ``-acc``, or
    float32 ``relu?(-acc * scale + shift)``, or that requantised to uint8 with ``out_scale`` and
    ``out_zero_point`` (``round(v * (1 / out_scale)) + out_zero_point``, clamped). A float32
    input is first quantised with ``input_scale`` and ``zero_point``.
    """
    from .native.ops_u8 import u8_out_dtype

    if input_scale is not None:
        from ..functional_u8 import quantize_tensor  # refuses NaN and inf, as the kernel does

        input = quantize_tensor(input, input_scale, zero_point)
    x = F.pad(input.to(torch.int64), (padding[1], padding[1], padding[0], padding[0]), value=int(zero_point))
    n = x.shape[0]
    o, cg, kh, kw = weight.shape
    xcol = _unfold(x.double(), (kh, kw), stride, 0, dilation).to(torch.int64)  # exact: bytes in float64
    xcol = xcol.view(n, groups, cg * kh * kw, -1)
    w = weight.to(torch.int64).reshape(groups, o // groups, -1)
    acc = torch.cat([(xcol[:, g, None] - w[g][None, :, :, None]).abs().sum(2) for g in range(groups)], 1)
    oh = (input.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    acc = acc.view(n, o, oh, -1)
    dtype = u8_out_dtype(scale, shift, relu, out_scale)
    if dtype == torch.int32:
        return (-acc).to(torch.int32)
    v = -acc.to(torch.float32)
    if scale is not None:
        v = v * scale.view(1, -1, 1, 1)
    if shift is not None:
        v = v + shift.view(1, -1, 1, 1)
    if relu:
        v = torch.relu(v)
    if dtype == torch.float32:
        return v
    # The kernel multiplies by the reciprocal (in float32) rather than dividing.
    return torch.clamp(torch.round(v * (1.0 / out_scale)) + out_zero_point, 0, 255).to(torch.uint8)


def _backward_masked(grad_out, x, weight, stride, padding, dilation, groups, output_mask):
    """``backward`` in the native op's form: a masked-out gradient is an empty tensor."""
    gx, gw = backward(grad_out, x, weight, stride, padding, dilation, groups,
                      need_input=output_mask[0], need_weight=output_mask[1])
    return (gx if output_mask[0] else x.new_empty((0,))), (gw if output_mask[1] else weight.new_empty((0,)))


class _TapSums:
    tapsum_output = staticmethod(tapsum_output)
    tapsum_input = staticmethod(tapsum_input)
    tapsum_weight = staticmethod(tapsum_weight)


_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# Every op, on every device torch runs these ops on: what the other backends fall back to.
BACKEND = Backend(
    name="reference",
    ops={
        "adder_conv2d": adder_conv2d,
        "adder_conv2d_exact": functools.partial(adder_conv2d, grad_mode="exact"),
        "adder_conv2d_backward": _backward_masked,
        "adder_conv2d_fused": compose_fused(adder_conv2d),
        "adder_conv2d_u8": adder_conv2d_u8,
        "adder_conv2d_tapsums": _TapSums,
        "adder_linear": linear_via_conv2d(adder_conv2d),
    },
    dtypes={"cpu": _FLOATS, "cuda": _FLOATS, "mps": _FLOATS},
    auto=True,
    fast=False,
)
