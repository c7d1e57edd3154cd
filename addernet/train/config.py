"""What a training run needs to know, and the paper's per-dataset defaults for what it is not told."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Union

from ..data.registry import dataset_name
from .optim import check_schedule

# The AdderNet paper's recipes (SGD, momentum 0.9, weight decay 5e-4, cosine lr over the whole run,
# eta=0.2 inside AdderConv2d). CIFAR: lr 0.1 * 0.5 * (1 + cos) is the official 0.05 * (1 + cos(pi e/400)).
# The paper gives no MNIST batch size: 256, as for CIFAR and ImageNet. digits and mnist5k are tiny
# embedded sets with no paper recipe: MNIST's lr, but batch 64, because at 256 an epoch is only 16
# (mnist5k) or 6 (digits) steps. The adder layers' weights move fast at lr 0.1, and BatchNorm's
# running statistics (an average over ~10 steps) lag behind them, so eval-mode accuracy trails the
# training accuracy until the cosine has brought the lr down: on mnist5k, 20 epochs of 63 steps
# reach the plateau (benchmarks/results/results_train.md), 20 epochs of 16 steps leave the adder ~1 point short.
RECIPES: dict[str, dict] = {
    "digits": dict(model="tinynet", epochs=50, batch_size=64, lr=0.1),
    "mnist5k": dict(model="lenet5_bn", epochs=20, batch_size=64, lr=0.1),
    "mnist": dict(model="lenet5_bn", epochs=50, batch_size=256, lr=0.1),
    "fashion-mnist": dict(model="lenet5_bn", epochs=50, batch_size=256, lr=0.1),
    "cifar10": dict(model="resnet20", epochs=400, batch_size=256, lr=0.1),
    "cifar100": dict(model="resnet20", epochs=400, batch_size=256, lr=0.1),
    "imagefolder": dict(model="resnet18", epochs=150, batch_size=256, lr=0.1),
}

KIND_CHOICES = ("adder", "conv", "both")


@dataclass
class TrainConfig:
    """One training run. Fields left ``None`` take the dataset's recipe (``RECIPES``) in ``resolve``.

    ``kind='both'`` trains the adder model and then its CNN twin, under ``out/adder`` and ``out/conv``.
    ``resume``: False, True (``out/last.pt``) or a checkpoint path. ``amp``: False, True/'bf16'
    (bfloat16 autocast) or 'fp16' (float16 autocast + GradScaler, CUDA). ``device`` None picks
    CUDA when there is one. ``limit_batches`` and ``stop_after`` cut a run short, for smoke tests and
    to simulate an interruption (the schedule still spans ``epochs``).
    """

    model: Optional[str] = None
    kind: str = "adder"
    data: str = "mnist5k"
    data_root: Optional[str] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    eta: Optional[float] = 0.2
    seed: int = 0
    out: Optional[str] = None
    resume: Union[bool, str] = False
    device: Optional[str] = None
    amp: Union[bool, str] = False
    distributed: bool = False
    num_workers: int = 0
    progress: bool = True
    schedule: str = "step"
    limit_batches: Optional[int] = None
    stop_after: Optional[int] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve(config: TrainConfig) -> TrainConfig:
    """A copy with the recipe's defaults filled in and the names checked."""
    data = dataset_name(config.data)
    if config.kind not in KIND_CHOICES:
        raise ValueError(f"kind must be one of {', '.join(KIND_CHOICES)}, got {config.kind!r}")
    check_schedule(config.schedule)
    recipe = RECIPES[data]
    filled = {k: (getattr(config, k) if getattr(config, k) is not None else v) for k, v in recipe.items()}
    out = config.out if config.out is not None else f"runs/{data}_{filled['model']}_{config.kind}"
    cfg = dataclasses.replace(config, data=data, out=str(out), **filled)
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):  # NaN fails every comparison: test it by name
        raise ValueError(f"lr must be a finite number above 0, got {cfg.lr}")
    for name in ("momentum", "weight_decay", "eta"):
        value = getattr(cfg, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number of at least 0, got {value}")
    return cfg


def recipe_help() -> str:
    lines = ["defaults per --data (when --model/--epochs/--batch-size/--lr are not given):"]
    for name, r in RECIPES.items():
        lines.append(f"  {name:<14} model {r['model']:<10} epochs {r['epochs']:<4} "
                     f"batch {r['batch_size']:<4} lr {r['lr']}")
    lines.append("all: SGD momentum 0.9, weight decay 5e-4, cosine lr*0.5*(1+cos(pi*t/T)) per step, eta 0.2")
    lines.append("(CIFAR's lr 0.1 is the official 0.05*(1+cos(pi*e/400)); --schedule epoch steps it per epoch as there)")
    return "\n".join(lines)
