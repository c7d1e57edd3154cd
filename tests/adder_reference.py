"""An independent float64 statement of the paper's formulas, for the tests.

It walks the kernel taps (no unfold, no fold), so it shares no code with any backend.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _taps(xpad, weight, stride, dilation, oh, ow):
    _, _, kh, kw = weight.shape
    for u in range(kh):
        for v in range(kw):
            ys = slice(u * dilation[0], u * dilation[0] + stride[0] * (oh - 1) + 1, stride[0])
            xs = slice(v * dilation[1], v * dilation[1] + stride[1] * (ow - 1) + 1, stride[1])
            yield u, v, ys, xs


def adder_forward_backward(x, weight, grad_out, stride, padding, dilation, groups):
    """Returns (Y, grad_X, grad_W) in float64:
    Y = -sum |Xpad - W|, grad_W = sum G*(Xpad - W), grad_X = sum G*clamp(W - X, -1, 1) (unpadded)."""
    x, weight = x.double(), weight.double()
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    og = o // groups
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    xpad = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    inside = F.pad(torch.ones_like(x), (padding[1], padding[1], padding[0], padding[0]))
    g = grad_out.double() if grad_out is not None else torch.zeros(n, o, oh, ow, dtype=torch.float64)
    y = torch.zeros(n, o, oh, ow, dtype=torch.float64)
    gw = torch.zeros_like(weight)
    gxpad = torch.zeros_like(xpad)
    for u, v, ys, xs in _taps(xpad, weight, stride, dilation, oh, ow):
        for grp in range(groups):
            xt = xpad[:, grp * cg:(grp + 1) * cg, ys, xs]            # (N, Cg, OH, OW)
            wt = weight[grp * og:(grp + 1) * og, :, u, v]           # (Og, Cg)
            gt = g[:, grp * og:(grp + 1) * og]                      # (N, Og, OH, OW)
            diff = xt[:, None] - wt[None, :, :, None, None]          # (N, Og, Cg, OH, OW)
            y[:, grp * og:(grp + 1) * og] -= diff.abs().sum(2)
            gw[grp * og:(grp + 1) * og, :, u, v] = (gt[:, :, None] * diff).sum((0, 3, 4))
            ht = (-diff).clamp(-1, 1)
            gxpad[:, grp * cg:(grp + 1) * cg, ys, xs] += (gt[:, :, None] * ht).sum(1)
    gxpad = gxpad * inside
    gx = gxpad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w]
    return y, gx, gw
