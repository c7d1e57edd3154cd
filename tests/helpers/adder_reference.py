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


def _slices(x, weight, stride, padding, dilation):
    """Padded X, the padding's inside-mask, and the taps, for the functions below."""
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    pad = (padding[1], padding[1], padding[0], padding[0])
    return F.pad(x, pad), list(_taps(None, weight, stride, dilation, oh, ow)), (oh, ow), pad


def exact_gradients(x, weight, grad_out, stride, padding, dilation, groups):
    """(grad_X, grad_W) of grad_mode="exact" in float64: sum G*sign(W - X) (unpadded taps) and
    sum G*sign(X - W) (padded taps included, where X is 0)."""
    x, weight, g = x.double(), weight.double(), grad_out.double()
    h, w = x.shape[2:]
    o, cg = weight.shape[:2]
    og = o // groups
    xpad, taps, _, _ = _slices(x, weight, stride, padding, dilation)
    gxpad, gw = torch.zeros_like(xpad), torch.zeros_like(weight)
    for u, v, ys, xs in taps:
        for grp in range(groups):
            xt = xpad[:, grp * cg:(grp + 1) * cg, ys, xs]
            d = weight[grp * og:(grp + 1) * og, :, u, v][None, :, :, None, None] - xt[:, None]
            gt = g[:, grp * og:(grp + 1) * og, None]
            gw[grp * og:(grp + 1) * og, :, u, v] = (gt * (-d).sign()).sum((0, 3, 4))
            gxpad[:, grp * cg:(grp + 1) * cg, ys, xs] += (gt * d.sign()).sum(1)
    return gxpad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w], gw


def second_order(x, weight, grad_out, hx, hw, stride, padding, dilation, groups, grad_mode="paper"):
    """(dG, dX, dW) = the vector-Jacobian product of the first-order gradients (grad_X, grad_W)
    with (hx, hw), in float64, as issue 11 states it. With D = W - X per tap, h = clamp(D, -1, 1),
    m = 1[|D| < 1]:
      paper: dG = sum Hx*h + sum Hw*(X - W); dX = -Hx * sum G*m + sum G*Hw; dW = sum Hx*G*m - Hw*sum G
      exact: dG = sum Hx*sign(D) + sum Hw*sign(X - W); dX = dW = 0.
    Padded taps: X and Hx are 0 there, and they are not pixels (no dX)."""
    x, weight, g = x.double(), weight.double(), grad_out.double()
    hx, hw = hx.double(), hw.double()
    h, w = x.shape[2:]
    o, cg = weight.shape[:2]
    og = o // groups
    xpad, taps, _, pad = _slices(x, weight, stride, padding, dilation)
    hxpad = F.pad(hx, pad)
    dg, dxpad, dw = torch.zeros_like(g), torch.zeros_like(xpad), torch.zeros_like(weight)
    for u, v, ys, xs in taps:
        for grp in range(groups):
            oc, cc = slice(grp * og, (grp + 1) * og), slice(grp * cg, (grp + 1) * cg)
            xt, hxt = xpad[:, cc, ys, xs][:, None], hxpad[:, cc, ys, xs][:, None]  # (N, 1, Cg, OH, OW)
            wt, hwt = weight[oc, :, u, v][None, :, :, None, None], hw[oc, :, u, v][None, :, :, None, None]
            gt = g[:, oc, None]                                                       # (N, Og, 1, OH, OW)
            d = wt - xt
            if grad_mode == "exact":
                dg[:, oc] += (hxt * d.sign() + hwt * (-d).sign()).sum(2)
                continue
            m = (d.abs() < 1).double()
            dg[:, oc] += (hxt * d.clamp(-1, 1) + hwt * (-d)).sum(2)
            dxpad[:, cc, ys, xs] += (-hxt * gt * m + gt * hwt).sum(1)
            dw[oc, :, u, v] += (hxt * gt * m - hwt * gt).sum((0, 3, 4))
    return dg, dxpad[:, :, padding[0]:padding[0] + h, padding[1]:padding[1] + w], dw
