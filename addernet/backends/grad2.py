"""Second-order gradients of the adder op, and ``grad_mode="exact"``, shared by the backends.

The first-order gradients (the paper's) are functions of G, X and W:
    gX = sum_taps G * h(W - X),     gW = sum_{n,p} G * (Xcol - W),
with h = clamp(., -1, 1). Their vector-Jacobian products, for upstream Hx (shaped like X) and Hw
(shaped like W), with D = W - Xcol at each tap and m = 1[|D| < 1]:
    wrt G: sum_k Hxcol * h(D)  +  conv2d(X, Hw) - sum_k Hw * W
    wrt X: -Hx * sum_taps G * m  +  conv_transpose2d(G, Hw)
    wrt W: sum_{n,p} Hxcol * G * m  -  Hw * sum_{n,p} G
Padded taps are zeros of X that nothing upstream reaches (Hxcol is 0 there). The convolution
terms go to oneDNN/cuDNN through aten; the h- and m-weighted sums are a backend's three tap sums
(``prims``: ``tapsum_output``, ``tapsum_input``, ``tapsum_weight``, see reference.py for their
definition). m is the derivative of h everywhere except at |D| = 1, where h has a kink.

"exact" mode: gX = sum G * sign(W - X), gW = sum G * sign(X - W) (padded taps included). sign has
zero derivative almost everywhere, so the only second-order path is through G:
    wrt G: sum_k (Hxcol - Hw) * sign(D);   wrt X, W: 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GRAD_MODES = ("paper", "exact")


def check_grad_mode(grad_mode: str) -> str:
    if grad_mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be 'paper' or 'exact', got {grad_mode!r}")
    return grad_mode


def _conv_transpose(g, x, hw, stride, padding, dilation, groups):
    """conv_transpose2d(G, Hw) sized exactly like X: conv2d's input gradient (and differentiable)."""
    gx, _, _ = torch.ops.aten.convolution_backward(
        g, x, hw, None, list(stride), list(padding), list(dilation), False, [0, 0], groups,
        [True, False, False],
    )
    return gx


def paper_vjp(prims, g, x, w, hx, hw, conf, needs):
    """(dG, dX, dW) of <Hx, gX> + <Hw, gW>; Hx or Hw None means that gradient was not asked for.
    ``needs`` says which of (G, X, W) want theirs; the others come back None."""
    stride, padding, dilation, groups = conf
    dg = dx = dw = None
    if needs[0]:
        terms = []
        if hx is not None:
            terms.append(prims.tapsum_output(hx, None, x, w, *conf, "hardtanh"))
        if hw is not None:
            corr = (hw * w).sum((1, 2, 3)).view(1, -1, 1, 1)
            terms.append(F.conv2d(x, hw, None, stride, padding, dilation, groups) - corr)
        dg = _sum(terms)
    if needs[1]:
        terms = []
        if hx is not None:
            terms.append(-hx * prims.tapsum_input(g, x, w, *conf, "mask"))
        if hw is not None:
            terms.append(_conv_transpose(g, x, hw, *conf))
        dx = _sum(terms)
    if needs[2]:
        terms = []
        if hx is not None:
            terms.append(prims.tapsum_weight(g, hx, x, w, *conf, "mask"))
        if hw is not None:
            terms.append(-hw * g.sum((0, 2, 3)).view(-1, 1, 1, 1))
        dw = _sum(terms)
    return dg, dx, dw


def exact_backward(prims, g, x, w, conf, mask):
    """(gX, gW) of "exact" mode; a masked-out one is an empty tensor, as in the native op."""
    gx = prims.tapsum_input(g, x, w, *conf, "sign") if mask[0] else x.new_empty((0,))
    gw = -prims.tapsum_weight(g, None, x, w, *conf, "sign") if mask[1] else w.new_empty((0,))
    return gx, gw


def exact_vjp(prims, g, x, w, hx, hw, conf, needs):
    """(dG, None, None): sign's derivative is zero almost everywhere."""
    if not needs[0] or (hx is None and hw is None):
        return (torch.zeros_like(g) if needs[0] else None), None, None
    return prims.tapsum_output(hx, None if hw is None else -hw, x, w, *conf, "sign"), None, None


def engine_will_use(ctx, i: int) -> bool:
    """Whether the autograd engine will use input ``i``'s gradient in the running backward.

    ``ctx.needs_input_grad`` only says the input requires grad. ``autograd.grad(ce, x)`` (the first
    pass of a gradient penalty) needs no weight gradient, and computing one is not only wasted: with
    create_graph=True the second pass then differentiates through it with a zero upstream gradient.
    The engine knows which nodes it will run (torch.utils.checkpoint asks it the same way). Any doubt
    (no graph task, a leaf captured by ``autograd.grad``, a ctx without ``next_functions``) answers
    True: an unused gradient costs time, a missing one would be wrong.
    """
    if not ctx.needs_input_grad[i]:
        return False
    try:
        node = ctx.next_functions[i][0]
        return node is None or bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, IndexError, RuntimeError, TypeError):
        return True


def _sum(terms):
    if not terms:
        return None
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def _upstream(grads, mask):
    """The backward op's incoming gradients, None for the outputs that were masked out (empty)."""
    return tuple(h if m else None for h, m in zip(grads, mask))


def register_first_order_autograd(op, backward_op):
    """Makes ``op`` (x, w, stride, padding, dilation, groups) -> y differentiable through
    ``backward_op`` (g, x, w, stride, padding, dilation, groups, mask) -> (gX, gW), asking it only
    for the gradients the running backward will use (``engine_will_use``)."""

    def setup_context(ctx, inputs, output):
        x, w, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, dilation, groups)

    def backward(ctx, grad_output):
        x, w = ctx.saved_tensors
        mask = [engine_will_use(ctx, 0), engine_will_use(ctx, 1)]
        gx, gw = backward_op(grad_output.contiguous(), x, w, *ctx.conf, mask)
        return (gx if mask[0] else None), (gw if mask[1] else None), None, None, None, None

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def register_backward_autograd(op, prims, vjp=paper_vjp):
    """Makes ``op`` (g, x, w, stride, padding, dilation, groups, mask) -> (gX, gW) differentiable."""

    def setup_context(ctx, inputs, output):
        g, x, w, stride, padding, dilation, groups, mask = inputs
        ctx.save_for_backward(g, x, w)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.mask = mask

    def backward(ctx, hx, hw):
        g, x, w = ctx.saved_tensors
        hx, hw = _upstream((hx, hw), ctx.mask)
        dg, dx, dw = vjp(prims, g, x, w, hx, hw, ctx.conf, ctx.needs_input_grad[:3])
        return dg, dx, dw, None, None, None, None, None

    torch.library.register_autograd(op, backward, setup_context=setup_context)


def define_exact(name: str, forward, prims):
    """Defines ``name`` (the forward, computed by ``forward``) with "exact" gradients, and its
    backward op ``name + '_backward'``, both differentiable as the module doc says.

    The forward is a separate op rather than an argument of the paper op's schema so that the
    existing ops, and their kernels, stay as they were.
    """

    def _shape(x, w, stride, padding, dilation):
        from .._validation import out_size

        return (x.shape[0], w.shape[0]) + tuple(
            out_size(x.shape[2 + i], w.shape[2 + i], stride[i], padding[i], dilation[i]) for i in range(2)
        )

    @torch.library.custom_op(name, mutates_args=())
    def fwd(input: torch.Tensor, weight: torch.Tensor, stride: list[int], padding: list[int],
            dilation: list[int], groups: int) -> torch.Tensor:
        return forward(input, weight, stride, padding, dilation, groups)

    @fwd.register_fake
    def _(input, weight, stride, padding, dilation, groups):
        return input.new_empty(_shape(input, weight, stride, padding, dilation))

    @torch.library.custom_op(name + "_backward", mutates_args=())
    def bwd(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor, stride: list[int],
            padding: list[int], dilation: list[int], groups: int,
            output_mask: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_backward(prims, grad_output.contiguous(), input, weight,
                              (stride, padding, dilation, groups), output_mask)

    @bwd.register_fake
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask):
        gi = input.new_empty(input.shape) if output_mask[0] else input.new_empty((0,))
        gw = weight.new_empty(weight.shape) if output_mask[1] else weight.new_empty((0,))
        return gi, gw

    register_first_order_autograd(fwd, bwd)
    register_backward_autograd(bwd, prims, vjp=exact_vjp)
    return fwd
