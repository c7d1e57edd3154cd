"""Training AdderNets and their CNN twins: a loop around a step, and the paper's recipes.

A whole run, with checkpoints, exact resume, metrics, plots and DDP, on the caller's model and
loaders; the step is the seam (any loss, several optimisers, double backprop)::

    from addernet.train import fit, StepOutput
    def step(model, batch):                      # -> StepOutput(loss, metrics)
        x, y = batch
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        return StepOutput(loss, {"loss": loss.detach()})
    fit(model, (train_loader, test_loader), step=step, epochs=10, out="runs/x")

The pieces, for loops of one's own::

    from addernet.train import build_optimizer, cosine_schedule, train_one_epoch, evaluate
    opt = build_optimizer(model, lr=0.1, no_decay=["fc.bias"])  # SGD, momentum 0.9, wd 5e-4
    sched = cosine_schedule(opt, epochs, len(train_loader))    # lr * 0.5 * (1 + cos(pi t / T)) per step
    for epoch in range(epochs):
        set_loader_epoch(train_loader, seed, epoch)
        train_one_epoch(model, train_loader, opt, sched, device, step=classification_step)
        evaluate(model, test_loader, device)

``mixed_precision(model, device, amp)`` is the adder layers' autocast policy for any loop. The
paper's runs by name (the CLI, ``addernet train --help``)::

    fit_config(TrainConfig(model="lenet5_bn", kind="adder", data="mnist5k", epochs=10, out="runs/x"))  # or fit(...)
    compare(TrainConfig(data="mnist5k", kind="both", epochs=10, out="runs/y"))   # adder vs conv
"""
from .amp import amp_dtype, make_scaler, mixed_precision, optimizer_step, restore_adder_grads
from .callbacks import Callback, TrainState
from .checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .config import RECIPES, TrainConfig, resolve
from .configured import compare, fit_config
from .costs import weight_layer_ops
from .engine import FitResult
from .fit import fit
from .loop import MetricMeter, evaluate, to_device, train_one_epoch
from .model_factory import TinyNet, build_model
from .optim import build_optimizer, cosine_schedule
from .runtime import epoch_seed, pick_device, seed_everything, set_loader_epoch
from .step import StepOutput, classification_step, soft_target_step

__all__ = [
    "Callback", "CheckpointError", "FitResult", "MetricMeter", "RECIPES", "StepOutput", "TinyNet", "TrainConfig",
    "TrainState",
    "amp_dtype", "atomic_write", "build_model", "build_optimizer", "classification_step", "compare", "cosine_schedule",
    "epoch_seed", "evaluate", "fit", "fit_config", "load_checkpoint", "make_scaler", "mixed_precision", "optimizer_step",
    "pick_device", "resolve", "restore_adder_grads", "save_checkpoint", "seed_everything", "set_loader_epoch",
    "soft_target_step", "to_device", "train_one_epoch", "weight_layer_ops",
]
