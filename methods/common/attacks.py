"""L-inf attacks in pixel space: PGD with a random start (Madry et al. 2018) and FGSM.

Inputs are images in [0, 1]; a model that expects normalised inputs carries its normalisation as
a module in front (addernet.data.Normalize). Every iterate stays within ``eps`` of x in L-inf and
inside [0, 1]. The model runs in eval mode (BatchNorm statistics are not touched) and is put back
in the mode it came in; gradients are taken with respect to the input only, so the model's
``.grad`` fields are left as they were.
"""
import torch
import torch.nn.functional as F

from .modes import eval_mode


def _check(x, y, eps):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise TypeError("x must be a floating-point tensor of images in [0, 1]")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"x must be in pixel space [0, 1], got values in [{float(x.min()):.4g}, "
                         f"{float(x.max()):.4g}]; pass unnormalised images and put the normalisation in the model")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {x.shape[0]} inputs")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def _input_grad(model, x_adv, y, loss_fn):
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x_adv), y)
        (grad,) = torch.autograd.grad(loss, x_adv)
    return grad


def _project(x_adv, x, eps):
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp_(0.0, 1.0)


def _default_loss(logits, y):
    # summed, so that the step is the same whatever the batch size (only the sign is used anyway)
    return F.cross_entropy(logits, y, reduction="sum")


def pgd(model, x, y, *, eps, alpha=None, steps=20, random_start=True, generator=None, loss_fn=None):
    """Untargeted L-inf PGD: `steps` signed-gradient ascent steps of size alpha (default 2.5 * eps / steps),
    each projected back onto the eps-ball around x and [0, 1]. random_start: begin at a uniform point of
    the ball (drawn from generator, a CPU torch.Generator, for reproducibility). Returns x_adv, detached."""
    _check(x, y, eps)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    alpha = 2.5 * eps / steps if alpha is None else alpha
    loss_fn = _default_loss if loss_fn is None else loss_fn
    x = x.detach()
    with eval_mode(model):
        if random_start and eps > 0:
            noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
            x_adv = _project(x + (2.0 * noise - 1.0) * eps, x, eps)
        else:
            x_adv = x.clone()
        for _ in range(steps):
            grad = _input_grad(model, x_adv, y, loss_fn)
            x_adv = _project(x_adv + alpha * grad.sign(), x, eps)
    return x_adv.detach()


def fgsm(model, x, y, *, eps, loss_fn=None):
    """Fast gradient sign method: one step of size eps from x, clipped to [0, 1]. Returns x_adv, detached."""
    _check(x, y, eps)
    loss_fn = _default_loss if loss_fn is None else loss_fn
    x = x.detach()
    with eval_mode(model):
        grad = _input_grad(model, x, y, loss_fn)
    return _project(x + eps * grad.sign(), x, eps).detach()
