"""The BoWNet stages end to end, each one callable alone:

    rotnet  = train_rotnet(backbone, loaders, epochs=...)                  # teacher 0
    bownet, vocab = train_bownet(rotnet, fresh_backbone, loaders, layer=..., num_words=...)
    bownet2, vocab2 = train_bownet(bownet.backbone, fresh_backbone, ...)   # BoWNet x2

Networks see pixel-space images in [0, 1] (the perturbations need a known range). Every model of
``addernet.models`` starts with a convolution followed by BatchNorm, which absorbs the usual
mean/std input normalisation.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from addernet.models import recalibrate_bn, replace_head
from addernet.train import build_optimizer, cosine_schedule, fit

from .head import BoWNet, no_decay_parameters
from .rotnet import ROTATIONS, RotationStep
from .step import BoWStep
from .vocabulary import BoWTeacher, build_vocabulary


def _steps(loader, limit_batches):
    n = len(loader)
    return n if limit_batches is None else min(n, limit_batches)


def train_rotnet(backbone: nn.Module, loaders, *, epochs: int, lr: float = 0.1, weight_decay: float = 5e-4,
                 mode: str = "all", perturb=None, seed: int = 0, device=None, progress: bool = True,
                 out: Optional[str] = None, distributed: bool = False, limit_batches: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = print) -> nn.Module:
    """Train ``backbone`` (its head replaced by a 4-way one) to predict the rotation of each image.
    ``loaders`` = (train, test) of (image, label) batches; labels are ignored."""
    net = replace_head(backbone, ROTATIONS)
    train, test = loaders[0], loaders[1]
    step = RotationStep(mode, perturb=perturb, seed=seed)
    res = fit(net, (train, test), step=step, eval_step=step, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed,
              device=device, progress=progress, out=out, distributed=distributed, limit_batches=limit_batches,
              log=log)
    return res.model


def train_bownet(teacher: nn.Module, backbone: nn.Module, loaders, *, layer: str, num_words: int, epochs: int,
                 input_shape: tuple[int, int, int], perturb=None, lr: float = 0.1, weight_decay: float = 5e-4,
                 kappa: float = 5.0, border: int = 1, max_vectors: int = 100_000, kmeans_iters: int = 50,
                 assign: str = "hard", pool: str = "max", binary: bool = False, inv_delta: float = 15.0,
                 recalibrate_teacher: bool = True, vocab_loader=None, seed: int = 0, device=None,
                 progress: bool = True, out: Optional[str] = None, distributed: bool = False,
                 limit_batches: Optional[int] = None, log: Optional[Callable[[str], None]] = print):
    """Build the vocabulary from ``teacher`` at ``layer``, then train ``backbone`` + a BoWHead from
    the perturbed images to predict the teacher's bags of words. Returns (student, vocabulary).

    ``vocab_loader``: clean images for the vocabulary and BN recalibration (default: the train
    loader); under DDP pass one that is the same on every rank. ``recalibrate_teacher``: the
    teacher was trained on rotated or perturbed images; its BatchNorm statistics are re-estimated
    on the clean images it now encodes (and an adder teacher's running statistics lag badly).
    """
    train, test = loaders[0], loaders[1]
    vocab_loader = train if vocab_loader is None else vocab_loader
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    teacher = teacher.to(dev)
    if recalibrate_teacher:
        recalibrate_bn(teacher, vocab_loader, device=dev)
    vocab = build_vocabulary(teacher, vocab_loader, layer, num_words, border=border, max_vectors=max_vectors,
                             seed=seed, iters=kmeans_iters, device=dev, progress=progress, assign=assign,
                             pool=pool, binary=binary, inv_delta=inv_delta)
    if log:
        log(f"vocabulary: {vocab.num_words} words of {vocab.words.shape[1]} dims at {layer!r}, "
            f"mean nearest-word distance {vocab.mean_min_dist.item():.4g}")
    student = BoWNet(backbone, num_words, kappa=kappa, input_shape=input_shape)
    optimizer = build_optimizer(student, lr, weight_decay=weight_decay, no_decay=no_decay_parameters(student))
    scheduler = cosine_schedule(optimizer, epochs, _steps(train, limit_batches))
    step = BoWStep(BoWTeacher(teacher, vocab), perturb, seed=seed)
    res = fit(student, (train, test), step=step, eval_step=step, optimizer=optimizer, scheduler=scheduler,
              epochs=epochs, extra_state={"vocabulary": vocab}, seed=seed, device=dev, progress=progress, out=out,
              distributed=distributed, limit_batches=limit_batches, log=log)
    return res.model, vocab


def random_init(backbone: nn.Module, loader, *, device=None, batches: int = 50) -> nn.Module:
    """The random-init baseline: untrained weights with BatchNorm statistics estimated on ``loader``
    (without it an adder network's eval-mode features can be constant)."""
    recalibrate_bn(backbone, loader, batches=batches, device=device)
    return backbone
