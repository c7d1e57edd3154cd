"""The AdderNet paper's gradient ablation: an adder layer whose backward is chosen per part.

Forward is always the library's op, Y = -sum |X - W|. Backward (G = dL/dY):

weight gradient
  "fp"    the paper's full-precision X - W:  sum G * (X - W)   (torch.ops.addernet.adder_conv2d_backward)
  "sign"  the true gradient of -|X - W|:      sum G * sign(X - W)
input gradient
  "hardtanh"  the paper's HT(W - X):          sum_o G * clamp(W - X, -1, 1)   (adder_conv2d_backward)
  "sign"      the true gradient:              sum_o G * sign(W - X)
  "fp"        unclipped full precision:       sum_o G * (W - X)
              = conv_transpose(G, W) - X * conv_transpose(G, ones): the first term is a conv's input
              gradient, the second folds the per-position sum of G back onto the input.

The "sign" parts are the true gradient, from the library's grad_mode="exact" backward
(torch.ops.addernet.adder_conv2d_exact_backward, issue 11). ``_sign_grads_unfold`` is the plain
definition (im2col and a broadcast sign(Xcol - W), slow), kept for the tests, which check both
against autograd of the reference formula. (Before issue 11 landed the sign came from the paper
HardTanh kernel on copies scaled by 2^20, a clamp that saturates to the sign except within 2^-20 of
a tie; a first run of the ablation used that.)

The adaptive learning-rate scaling (eta) is applied to the weight before this op, exactly as
AdderConv2d does, so it scales whichever weight gradient is chosen.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input

from addernet.functional import adder_conv2d
from addernet.nn import AdderConv2d, adaptive_scale

WEIGHT_GRADS = ("fp", "sign")
INPUT_GRADS = ("hardtanh", "sign", "fp")
PAPER = ("fp", "hardtanh")  # the paper's choice
# Elements of the broadcast (N, O, K, L) temporary of the slow sign path, per chunk.
_CHUNK = 1 << 24


def _sign_grads_exact(g, x, w, stride, padding, dilation, want_x: bool, want_w: bool):
    """sum_o G*sign(W-X) for X and sum G*sign(X-W) for W: the library's grad_mode="exact" backward."""
    gx, gw = torch.ops.addernet.adder_conv2d_exact_backward(g, x, w, list(stride), list(padding), list(dilation),
                                                            1, [want_x, want_w])
    return (gx if want_x else None), (gw if want_w else None)


def _sign_grads_unfold(g, x, w, stride, padding, dilation, want_x: bool, want_w: bool):
    """The exact definition, SLOW: sum G*sign(X-W) for W and sum_o G*sign(W-X) for X (groups=1)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xcol = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # (N, K, L)
    gcol = g.reshape(n, o, -1)                                                       # (N, O, L)
    wf = w.reshape(o, -1)                                                            # (O, K)
    k, l = xcol.shape[1:]
    gw = torch.zeros_like(wf) if want_w else None
    gx = torch.empty_like(xcol) if want_x else None
    step = max(1, _CHUNK // max(1, o * k * l))
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        sgn = torch.sign(xcol[sl, None] - wf[None, :, :, None]) * gcol[sl, :, None, :]  # (n, O, K, L)
        if want_w:
            gw += sgn.sum((0, 3))
        if want_x:
            gx[sl] = -sgn.sum(1)
    gx = F.fold(gx, (h, wd), (kh, kw), dilation=dilation, padding=padding, stride=stride) if want_x else None
    return gx, (gw.view_as(w) if want_w else None)


SIGN_PATH = _sign_grads_exact  # _sign_grads_unfold: the plain definition, slow


def fp_input_grad(g, x, w, stride, padding, dilation, groups):
    """sum_o G * (W - X), unclipped: conv_transpose(G, W) - X * conv_transpose(G, ones)."""
    size = x.shape
    return (conv2d_input(size, w, g, stride, padding, dilation, groups)
            - x * conv2d_input(size, torch.ones_like(w), g, stride, padding, dilation, groups))


class _VariantAdder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, stride, padding, dilation, groups, weight_grad, input_grad):
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.modes = (weight_grad, input_grad)
        with torch.no_grad():
            return adder_conv2d(x, w, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        weight_grad, input_grad = ctx.modes
        want_x, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        g = g.contiguous()
        gx = gw = None
        paper_x, paper_w = want_x and input_grad == "hardtanh", want_w and weight_grad == "fp"
        if paper_x or paper_w:
            px, pw = torch.ops.addernet.adder_conv2d_backward(g, x, w, stride, padding, dilation, groups,
                                                              [paper_x, paper_w])
            gx = px if paper_x else None
            gw = pw if paper_w else None
        sign_x, sign_w = want_x and input_grad == "sign", want_w and weight_grad == "sign"
        if sign_x or sign_w:
            if groups != 1:
                raise NotImplementedError("the exact-sign gradients here take groups=1 only")
            sx, sw = SIGN_PATH(g, x, w, stride, padding, dilation, sign_x, sign_w)
            gx = sx if sign_x else gx
            gw = sw if sign_w else gw
        if want_x and input_grad == "fp":
            gx = fp_input_grad(g, x, w, stride, padding, dilation, groups)
        return gx, gw, None, None, None, None, None, None


def adder_conv2d_variant(x, w, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                         weight_grad="fp", input_grad="hardtanh"):
    """The adder op with the chosen backward (see the module docstring); no bias."""
    if weight_grad not in WEIGHT_GRADS:
        raise ValueError(f"weight_grad must be one of {WEIGHT_GRADS}, got {weight_grad!r}")
    if input_grad not in INPUT_GRADS:
        raise ValueError(f"input_grad must be one of {INPUT_GRADS}, got {input_grad!r}")
    return _VariantAdder.apply(x, w, tuple(stride), tuple(padding), tuple(dilation), groups, weight_grad, input_grad)


class VariantAdderConv2d(AdderConv2d):
    """AdderConv2d whose backward is chosen (``weight_grad``, ``input_grad``); zero padding, no bias."""

    def __init__(self, *args, weight_grad: str = "fp", input_grad: str = "hardtanh", **kw):
        super().__init__(*args, **kw)
        if self.bias is not None or self.padding_mode != "zeros" or isinstance(self.padding, str):
            raise ValueError("VariantAdderConv2d takes bias=False, numeric zero padding only")
        adder_conv2d_variant(torch.zeros(1, self.in_channels, *self.kernel_size), self.weight.detach(),
                             weight_grad=weight_grad, input_grad=input_grad)  # validates the modes
        self.weight_grad, self.input_grad = weight_grad, input_grad

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_grad={self.weight_grad}, input_grad={self.input_grad}"

    def forward(self, x):
        w = self.weight if self.eta is None else adaptive_scale(self.weight, self.eta)
        return adder_conv2d_variant(x, w, self.stride, self.padding, self.dilation, self.groups,
                                    self.weight_grad, self.input_grad)


def use_gradients(model: nn.Module, weight_grad: str, input_grad: str) -> nn.Module:
    """Swap every AdderConv2d of ``model`` (in place) for a VariantAdderConv2d with the same
    hyper-parameters, eta and weights, and the chosen backward. Returns ``model``."""
    for parent in list(model.modules()):
        for name, m in list(parent.named_children()):
            if type(m) is AdderConv2d:
                new = VariantAdderConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                         m.dilation, m.groups, bias=m.bias is not None, eta=m.eta,
                                         device=m.weight.device, dtype=m.weight.dtype,
                                         weight_grad=weight_grad, input_grad=input_grad)
                new.load_state_dict(m.state_dict())
                setattr(parent, name, new.train(m.training))
    return model
