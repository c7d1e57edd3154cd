"""The IGAM student step: an ``addernet.train`` step, plus the callback that steps the discriminator.

Student objective (official code): CE - beta * CE_D + gamma * L_diff. ``beta = 0`` drops the
discriminator (the "L_diff only" student); ``gamma = beta = 0`` is plain cross-entropy. With no
teacher (``teacher=None``, beta 0) L_diff compares J_s with zero: the plain input-gradient-norm
penalty gamma * ||J_s||^2, issue 27's control for generic gradient regularisation.

    step = IGAMStep(teacher, beta=2, gamma=10, discriminator=D, input_size=(1, 28, 28))
    fit(student, loaders, step=step, callbacks=step.callbacks(), extra_state=step.extra_state(), ...)

D takes its step after the student's (in ``on_step``, which the loop calls after the student's
optimiser step) on every ``disc_every``-th student step (index % 5 == 0, as the official
``ii % disc_update_steps == 0``), on the same batch, with the student's input gradient recomputed
after the update, as the official graph does. D uses the student optimiser's current learning rate
and momentum and weight decay 2e-4 on its weights (the official 'DW' variables). Before
``warmup_steps`` student steps the student trains on CE alone and D does not train.
The step's counter, D and D's optimiser are ``extra_state``, so checkpoints carry them.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from addernet.train import Callback, StepOutput, build_optimizer

from .discriminator import GradientDiscriminator, discriminator_loss
from .gradients import input_gradient, l_diff


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients: a teacher that cannot change."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class IGAMStep:
    """Callable ``step(model, batch) -> StepOutput`` for ``addernet.train.fit``/``train_one_epoch``.

    ``teacher``: the frozen, logit-fine-tuned robust teacher (put in eval mode, gradients off).
    ``adapter``: maps student images to the teacher's input size (``adapters.make_adapter``).
    ``target``/``reduction``: see ``gradients``. ``input_size``: (C, H, W) of the student's images,
    to build D when ``beta > 0`` and no ``discriminator`` is given.
    """

    def __init__(self, teacher: nn.Module, *, beta: float = 2.0, gamma: float = 10.0,
                 discriminator: Optional[nn.Module] = None, input_size: Optional[tuple] = None,
                 reduction: str = "mean", target: str = "prob", adapter: Optional[Callable] = None,
                 warmup_steps: int = 0, disc_every: int = 5, disc_weight_decay: float = 2e-4):
        if beta < 0 or gamma < 0:
            raise ValueError(f"beta and gamma must be >= 0, got beta={beta}, gamma={gamma}")
        if disc_every < 1 or warmup_steps < 0:
            raise ValueError("disc_every must be >= 1 and warmup_steps >= 0")
        if teacher is None and beta > 0:
            raise ValueError("beta > 0 needs a teacher: D tells the student's input gradients from the teacher's")
        self.teacher = freeze(teacher) if teacher is not None else None
        self.beta, self.gamma = float(beta), float(gamma)
        self.reduction, self.target, self.adapter = reduction, target, adapter
        self.warmup_steps, self.disc_every = int(warmup_steps), int(disc_every)
        self.disc_weight_decay = float(disc_weight_decay)
        self.steps = 0            # student steps taken (checkpointed)
        self.disc_updates = 0     # D steps taken (checkpointed; reported by the miniature)
        self._last = None         # (x, y, teacher J) of the latest IGAM step, for D's step
        self.discriminator = None
        self.disc_optimizer = None
        if self.beta > 0:
            if discriminator is None:
                if input_size is None:
                    raise ValueError("beta > 0 needs a discriminator or the student's input_size (C, H, W)")
                discriminator = GradientDiscriminator(input_size)
            self.discriminator = discriminator
            decay = set(map(id, discriminator.weight_decay_parameters())) if hasattr(
                discriminator, "weight_decay_parameters") else None
            no_decay = [] if decay is None else [p for p in discriminator.parameters() if id(p) not in decay]
            # lr/momentum are copied from the student's optimiser before every D step.
            self.disc_optimizer = build_optimizer(discriminator, lr=0.0, momentum=0.9,
                                                  weight_decay=self.disc_weight_decay, no_decay=no_decay)

    @property
    def uses_gradients(self) -> bool:
        return self.beta > 0 or self.gamma > 0

    def to(self, device) -> "IGAMStep":
        if self.teacher is not None:
            self.teacher.to(device)
        if self.discriminator is not None:
            self.discriminator.to(device)
        if self.adapter is not None and isinstance(self.adapter, nn.Module):
            self.adapter.to(device)
        return self

    def __call__(self, model: nn.Module, batch) -> StepOutput:
        x, y = batch[0], batch[1]
        index, self.steps = self.steps, self.steps + 1
        if not self.uses_gradients or index < self.warmup_steps:
            self._last = None
            logits = model(x)
            ce = F.cross_entropy(logits, y)
            return StepOutput(ce, {"loss": ce.detach(), "acc": _acc(logits, y), "ce": ce.detach()})

        if self.teacher is None:      # the gradient-norm penalty: L_diff against a zero gradient
            teacher_grad = torch.zeros_like(x)
        else:
            teacher_grad = input_gradient(self.teacher, x, y, target=self.target, adapter=self.adapter)
        student_grad, logits = input_gradient(model, x, y, target=self.target, create_graph=True,
                                              return_logits=True)
        ce = F.cross_entropy(logits, y)
        diff = l_diff(student_grad, teacher_grad, self.reduction)
        loss = ce + self.gamma * diff
        metrics = {"ce": ce.detach(), "l_diff": diff.detach(), "acc": _acc(logits, y)}
        if self.beta > 0:
            disc = self.discriminator
            disc.requires_grad_(False)   # the student's backward reaches J_s through D, not D's weights
            try:
                ce_d, d_acc = discriminator_loss(disc, student_grad, teacher_grad)
            finally:
                disc.requires_grad_(True)
            loss = loss - self.beta * ce_d
            metrics.update(adv=(-self.beta * ce_d).detach(), d_acc=d_acc)
            self._last = (index, x.detach(), y.detach(), teacher_grad)
        metrics["loss"] = loss.detach()
        return StepOutput(loss, metrics)

    def discriminator_step(self, student: nn.Module, student_optimizer: Optional[torch.optim.Optimizer] = None):
        """D's update after the student's step, on the latest batch, if this step index is due.
        Returns D's (CE_D, accuracy) or None."""
        if self.discriminator is None or self._last is None:
            return None
        index, x, y, teacher_grad = self._last
        self._last = None
        if index % self.disc_every != 0:
            return None
        if student_optimizer is not None:
            group = student_optimizer.param_groups[0]
            for g in self.disc_optimizer.param_groups:
                g["lr"] = group["lr"]
                g["momentum"] = group.get("momentum", g.get("momentum", 0.0))
        student_grad = input_gradient(_unwrap(student), x, y, target=self.target)
        self.disc_optimizer.zero_grad(set_to_none=True)
        ce_d, acc = discriminator_loss(self.discriminator, student_grad, teacher_grad)
        ce_d.backward()
        _average_gradients(self.discriminator)
        self.disc_optimizer.step()
        self.disc_updates += 1
        return ce_d.detach(), acc

    def callbacks(self) -> list:
        return [DiscriminatorUpdate(self)] if self.discriminator is not None else []

    def extra_state(self) -> dict:
        state = {"igam_step": self}
        if self.discriminator is not None:
            state.update(igam_discriminator=self.discriminator, igam_disc_optimizer=self.disc_optimizer)
        return state

    def state_dict(self) -> dict:
        return {"steps": self.steps, "disc_updates": self.disc_updates}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        self.disc_updates = int(state.get("disc_updates", 0))   # checkpoints from before the counter
        self._last = None


def _acc(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == y).float().mean()


def _average_gradients(module: nn.Module) -> None:
    # Under DDP every rank steps its own D: average D's gradients so that the copies stay equal.
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world)


class DiscriminatorUpdate(Callback):
    """Runs ``IGAMStep.discriminator_step`` after each student step (the loop's ``on_step``)."""

    def __init__(self, step: IGAMStep):
        self.step = step

    def on_step(self, state, out) -> None:
        self.step.discriminator_step(state.model, state.optimizer)
