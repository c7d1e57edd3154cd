"""Training AdderNets and their CNN twins with the paper's recipes.

The pieces, for pipelines that train their own way::

    from addernet.train import build_optimizer, cosine_schedule, train_one_epoch, evaluate
    opt = build_optimizer(model, lr=0.1)                       # SGD, momentum 0.9, wd 5e-4
    sched = cosine_schedule(opt, epochs, len(train_loader))    # lr * 0.5 * (1 + cos(pi t / T)) per step
    for epoch in range(epochs):
        set_loader_epoch(train_loader, seed, epoch)
        train_one_epoch(model, train_loader, opt, sched, device)
        evaluate(model, test_loader, device)

and the whole run, with checkpoints, exact resume, metrics, plots and DDP::

    from addernet.train import TrainConfig, fit, compare
    fit(TrainConfig(model="lenet5_bn", kind="adder", data="mnist5k", epochs=10, out="runs/x"))
    compare(TrainConfig(data="mnist5k", kind="both", epochs=10, out="runs/y"))   # adder vs conv

``addernet train --help`` is the command-line form.
"""
from .checkpoint import load_checkpoint, save_checkpoint
from .config import RECIPES, TrainConfig, resolve
from .costs import count_ops
from .fit import FitResult, compare, epoch_seed, fit, pick_device, seed_everything, set_loader_epoch
from .loop import evaluate, train_one_epoch
from .optim import build_optimizer, cosine_schedule
from .tiny import TinyNet, build_model

__all__ = [
    "FitResult", "RECIPES", "TinyNet", "TrainConfig", "build_model", "build_optimizer", "compare", "cosine_schedule",
    "count_ops", "epoch_seed", "evaluate", "fit", "load_checkpoint", "pick_device", "resolve", "save_checkpoint",
    "seed_everything", "set_loader_epoch", "train_one_epoch",
]
