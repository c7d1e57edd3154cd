"""Robustness evaluation: clean, FGSM, PGD-20 with random start at several eps, and a transfer attack
from an independently trained model (to catch gradient masking).

For a model with adder layers every attack runs twice: through the paper's surrogate (HardTanh)
input gradient and with ``grad_mode="exact"`` (the true gradient of the L1 form, issue 11); an image
counts as robust only if it survives both (worst case per image), since a surrogate gradient may
overstate robustness.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from addernet.nn import AdderConv2d
from methods.common import fgsm, pgd
from methods.common.stats import is_degenerate

GRAD_MODES = ("paper", "exact")


def adder_layers(model: nn.Module) -> list[AdderConv2d]:
    return [m for m in model.modules() if isinstance(m, AdderConv2d)]


def grad_mode_supported() -> bool:
    """Whether AdderConv2d takes grad_mode (issue 11)."""
    return "grad_mode" in inspect.signature(AdderConv2d.__init__).parameters


@contextlib.contextmanager
def adder_grad_mode(model: nn.Module, mode: str):
    """Every adder layer of ``model`` uses ``mode`` ('paper' or 'exact') inside the block."""
    if mode not in GRAD_MODES:
        raise ValueError(f"grad_mode must be one of {', '.join(map(repr, GRAD_MODES))}, got {mode!r}")
    layers = adder_layers(model)
    if not layers or mode == "paper" and not grad_mode_supported():
        yield model      # no adder layer, or an AdderConv2d that only knows the paper's gradient
        return
    if not grad_mode_supported():
        raise RuntimeError("grad_mode='exact' needs AdderConv2d(grad_mode=...) from issue 11, which this "
                           "addernet does not have; evaluate with adder_grad_modes=('paper',) and say so")
    saved = [m.grad_mode for m in layers]
    try:
        for m in layers:
            m.grad_mode = mode
        yield model
    finally:
        for m, g in zip(layers, saved):
            m.grad_mode = g


def set_adder_backend(model: nn.Module, backend: Optional[str]) -> nn.Module:
    """Pin every adder layer of ``model`` to ``backend`` (None: the global choice)."""
    for m in adder_layers(model):
        m.backend = backend
    return model


def _batches(loader, device, limit: Optional[int]):
    seen = 0
    for batch in loader:
        x, y = batch[0].to(device), batch[1].to(device)
        if limit is not None:
            if seen >= limit:
                break
            x, y = x[: limit - seen], y[: limit - seen]
        seen += len(y)
        yield x, y


@torch.no_grad()
def _correct_mask(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1) == y


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    return int(_correct_mask(model, x, y).sum())


def transfer_examples(source: nn.Module, loader, *, eps: float, steps: int = 20, seed: int = 0,
                      device="cpu", limit: Optional[int] = None) -> list:
    """PGD adversarial examples (x_adv, y) crafted on ``source``, to be replayed on other models."""
    source = source.to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    return [(pgd(source, x, y, eps=eps, steps=steps, random_start=True, generator=gen).detach(), y)
            for x, y in _batches(loader, device, limit)]


def robustness(model: nn.Module, loader, *, eps: Sequence[float] = (0.05, 0.1, 0.15), steps: int = 20,
               fgsm_eps: float = 0.1, transfer: Optional[Iterable] = None, seed: int = 0, device="cpu",
               limit: Optional[int] = None, adder_grad_modes: Sequence[str] = GRAD_MODES) -> dict:
    """Accuracies (fractions) of ``model`` in eval mode: {'clean', 'fgsm', 'pgd': {eps: acc},
    'transfer' (None without examples), 'pgd_by_mode': {mode: {eps: acc}}, 'predictions', 'degenerate'}.

    ``transfer``: ``transfer_examples`` output. With adder layers, FGSM and PGD run under each of
    ``adder_grad_modes`` and an image counts as robust only if it survives every mode (the worst case
    per image: taking the lower of the modes' aggregate accuracies would credit an image that one
    mode breaks whenever the other mode breaks a different one). 'predictions' are the clean
    predicted classes; 'degenerate' is True when they are all one class (a constant predictor).
    """
    model = model.to(device)
    was = model.training
    model.eval()
    modes = tuple(adder_grad_modes) if adder_layers(model) else ("paper",)
    if not modes:
        raise ValueError("adder_grad_modes is empty")
    try:
        total = clean = fgsm_ok = 0
        pgd_ok = {e: 0 for e in eps}
        by_mode = {m: {e: 0 for e in eps} for m in modes}
        gens = {m: torch.Generator().manual_seed(seed) for m in modes}
        preds = []
        for x, y in _batches(loader, device, limit):
            total += len(y)
            with torch.no_grad():
                p = model(x).argmax(1)
            preds.append(p.cpu())
            clean += int((p == y).sum())
            f_ok = torch.ones_like(y, dtype=torch.bool)
            e_ok = {e: torch.ones_like(y, dtype=torch.bool) for e in eps}
            for m in modes:
                with adder_grad_mode(model, m):
                    f_ok &= _correct_mask(model, fgsm(model, x, y, eps=fgsm_eps), y)
                    for e in eps:
                        x_adv = pgd(model, x, y, eps=e, steps=steps, random_start=True, generator=gens[m])
                        ok = _correct_mask(model, x_adv, y)
                        by_mode[m][e] += int(ok.sum())
                        e_ok[e] &= ok
            fgsm_ok += int(f_ok.sum())
            for e in eps:
                pgd_ok[e] += int(e_ok[e].sum())
        if total == 0:
            raise ValueError("the evaluation loader is empty")
        predictions = torch.cat(preds)
        out = {"clean": clean / total, "fgsm": fgsm_ok / total,
               "pgd": {e: c / total for e, c in pgd_ok.items()},
               "pgd_by_mode": {m: {e: c / total for e, c in d.items()} for m, d in by_mode.items()},
               "samples": total, "transfer": None, "predictions": predictions,
               "degenerate": is_degenerate(predictions.numpy())}
        if transfer is not None:
            hit = n = 0
            for x_adv, y in transfer:
                hit += _correct(model, x_adv.to(device), y.to(device))
                n += len(y)
            out["transfer"] = hit / max(n, 1)
        return out
    finally:
        model.train(was)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed CW margin, best other logit minus the true one: its gradient does not vanish when the
    softmax saturates, which a cross-entropy attack can suffer from (one form of gradient masking)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return (other.max(1).values - true).sum()


def strong_pgd(model: nn.Module, loader, *, eps: float, steps: int = 100, restarts: int = 5, seed: int = 0,
               device="cpu", limit: Optional[int] = None, adder_grad_modes: Sequence[str] = GRAD_MODES) -> float:
    """Accuracy (a fraction) under the strong attack of issue 27: per image, the worst case of
    ``restarts`` random-start PGD runs of ``steps`` steps on the cross-entropy and as many on the CW
    margin loss; a model with adder layers is attacked so under each of ``adder_grad_modes`` too, and
    an image counts as robust only if it survives every run of every mode."""
    if steps < 1 or restarts < 1:
        raise ValueError(f"steps and restarts must be >= 1, got {steps}, {restarts}")
    model = model.to(device)
    was = model.training
    model.eval()
    modes = tuple(adder_grad_modes) if adder_layers(model) else ("paper",)
    if not modes:
        raise ValueError("adder_grad_modes is empty")
    gen = torch.Generator().manual_seed(seed)
    try:
        total = robust = 0
        for x, y in _batches(loader, device, limit):
            ok = _correct_mask(model, x, y)
            for m in modes:
                with adder_grad_mode(model, m):
                    for loss_fn in (None, margin_loss):
                        for _ in range(restarts):
                            # only the images still standing: one already fooled stays fooled (the
                            # model is in eval mode, so an image's result does not depend on the others)
                            left = ok.nonzero().squeeze(1)
                            if len(left) == 0:
                                break
                            x_adv = pgd(model, x[left], y[left], eps=eps, steps=steps, random_start=True,
                                        generator=gen, loss_fn=loss_fn)
                            ok[left] &= _correct_mask(model, x_adv, y[left])
            total += len(y)
            robust += int(ok.sum())
        if total == 0:
            raise ValueError("the evaluation loader is empty")
        return robust / total
    finally:
        model.train(was)


def square_accuracy(model: nn.Module, loader, *, eps: float, queries: int = 1000, limit: Optional[int] = 200,
                    seed: int = 0, device="cpu") -> float:
    """Accuracy (a fraction) under the Square attack (Andriushchenko et al., ECCV 2020), L-inf, one
    restart of ``queries`` queries, on the first ``limit`` images: a random search that never reads a
    gradient, so a model that masks its gradients cannot fool it. Issue 27's check on PGD's verdicts.
    The attack is ART's (adversarial-robustness-toolbox); an image counts as robust when it is
    classified correctly both clean and after the attack."""
    try:
        from art.attacks.evasion import SquareAttack
        from art.estimators.classification import PyTorchClassifier
    except ImportError as e:   # an optional dependency: say which package to install
        raise ImportError("the Square attack needs adversarial-robustness-toolbox "
                          "(pip install 'torch-addernet[methods]')") from e
    import numpy as np
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    model = model.to(device)
    was = model.training
    model.eval()
    try:
        xs, ys = [], []
        for x, y in _batches(loader, device, limit):
            xs.append(x.cpu())
            ys.append(y.cpu())
        if not xs:
            raise ValueError("the evaluation loader is empty")
        x, y = torch.cat(xs), torch.cat(ys)
        if x.dim() != 4 or min(x.shape[-2:]) < 5:
            # ART's first square covers 80% of the image and fails to place on smaller ones
            raise ValueError(f"the Square attack needs images of at least 5x5 pixels (N, C, H, W), got "
                             f"{tuple(x.shape)}")
        with torch.no_grad():
            num_classes = model(x[:1].to(device)).shape[1]
        clf = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=num_classes, clip_values=(0.0, 1.0), device_type="cpu"
                                if str(device) == "cpu" else "gpu")
        state = np.random.get_state()
        np.random.seed(seed)          # ART draws its squares from numpy's global generator
        try:
            attack = SquareAttack(clf, norm=np.inf, eps=eps, max_iter=queries, nb_restarts=1, verbose=False)
            x_adv = torch.from_numpy(attack.generate(x.numpy(), y=y.numpy())).to(x.dtype)
        finally:
            np.random.set_state(state)
        with torch.no_grad():
            ok = _correct_mask(model, x.to(device), y.to(device)) & _correct_mask(model, x_adv.to(device),
                                                                                 y.to(device))
        return float(ok.sum()) / len(ok)     # exact: a float32 mean prints 67.5000011920929
    finally:
        model.train(was)
