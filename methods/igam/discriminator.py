"""The gradient discriminator D of the official IGAM code, and the losses around it.

D tells the teacher's input gradients (label 1, "real") from the student's (label 0, "fake").
Its input is each gradient made zero-mean, then L2-normalised, per sample. Then 5 blocks of
[4x4 stride-2 'SAME' conv with bias, BatchNorm (TF decay 0.9 = momentum 0.1, eps 1e-3),
LeakyReLU 0.1] with 16 * 2**i channels, and a linear layer to 2 logits. Student and teacher
gradients go through D as one concatenated batch, so that they share BatchNorm statistics.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

STUDENT_LABEL, TEACHER_LABEL = 0, 1


def normalize_gradients(grad: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per sample: subtract the mean over (C, H, W), then divide by the L2 norm (tf.math.l2_normalize:
    x / sqrt(max(sum x^2, eps)))."""
    g = grad - grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True)
    sq = g.pow(2).sum(dim=tuple(range(1, g.dim())), keepdim=True)
    return g * torch.rsqrt(sq.clamp_min(eps))


def _same_out(size: int, stride: int) -> int:
    return math.ceil(size / stride)


class SameConv2d(nn.Conv2d):
    """TensorFlow's padding='SAME': output ceil(H / stride); an odd total pad puts the extra row and
    column at the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((_same_out(size, s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class GradientDiscriminator(nn.Module):
    """D(J) -> 2 logits. ``input_size`` = (C, H, W) of the gradients it will see."""

    def __init__(self, input_size: tuple[int, int, int], blocks: int = 5, base_channels: int = 16,
                 leak: float = 0.1):
        super().__init__()
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(f"input_size must be (C, H, W), got {input_size!r}")
        if blocks < 1 or base_channels < 1:
            raise ValueError("blocks and base_channels must be positive")
        self.input_size = tuple(int(v) for v in input_size)
        c, h, w = self.input_size
        layers: list[nn.Module] = []
        for i in range(blocks):
            out = base_channels * 2 ** i
            conv = SameConv2d(c, out, 4, stride=2, bias=True)
            # The official init: N(0, sqrt(2 / (k*k*out))), zero bias.
            nn.init.normal_(conv.weight, std=math.sqrt(2.0 / (16 * out)))
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.BatchNorm2d(out, momentum=0.1, eps=1e-3), nn.LeakyReLU(leak)]
            c, h, w = out, _same_out(h, 2), _same_out(w, 2)
        self.features = nn.Sequential(*layers)
        self.logit = nn.Linear(c * h * w, 2)
        # tf.uniform_unit_scaling_initializer(1.0): U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)).
        bound = math.sqrt(3.0 / (c * h * w))
        nn.init.uniform_(self.logit.weight, -bound, bound)
        nn.init.zeros_(self.logit.bias)

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        if tuple(grad.shape[1:]) != self.input_size:
            raise ValueError(f"discriminator built for gradients of size {self.input_size}, "
                             f"got {tuple(grad.shape[1:])}")
        return self.logit(self.features(normalize_gradients(grad)).flatten(1))

    def weight_decay_parameters(self) -> list[nn.Parameter]:
        """The weights the official code decays (its 'DW' variables): conv and linear weights only."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def discriminate(disc: nn.Module, student_grad: torch.Tensor, teacher_grad: torch.Tensor):
    """(logits, labels) of D over the one concatenated batch [student; teacher]."""
    if student_grad.shape != teacher_grad.shape:
        raise ValueError(f"student and teacher gradients differ in shape: {tuple(student_grad.shape)} vs "
                         f"{tuple(teacher_grad.shape)}")
    n = student_grad.shape[0]
    logits = disc(torch.cat([student_grad, teacher_grad.detach()], 0))
    labels = torch.cat([torch.full((n,), STUDENT_LABEL, dtype=torch.long, device=logits.device),
                        torch.full((n,), TEACHER_LABEL, dtype=torch.long, device=logits.device)])
    return logits, labels


def discriminator_loss(disc: nn.Module, student_grad: torch.Tensor, teacher_grad: torch.Tensor):
    """(CE_D, accuracy of D): D's mean cross-entropy over the concatenated batch. D minimises CE_D;
    the student's adversarial term is -beta * CE_D (the official saturating minimax form), which
    falls as D is fooled."""
    logits, labels = discriminate(disc, student_grad, teacher_grad)
    ce = F.cross_entropy(logits.float(), labels)
    acc = (logits.detach().argmax(1) == labels).float().mean()
    return ce, acc
