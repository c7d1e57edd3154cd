"""What a configured run checks before its first epoch, so that a mistake costs no training time:
the model takes the data's images, and a checkpoint to resume is intact, well formed, and of
this run (its config and the model's tensor shapes)."""
from __future__ import annotations

import dataclasses
import os

import torch

from .checkpoint import load_checkpoint
from .checkpoint_checks import check_run_checkpoint, config_mismatch
from .model_factory import build_model


def _meta_model(model: str, kind: str, info):
    with torch.device("meta"):  # shapes only: no memory, no init cost
        return build_model(model, num_classes=info.num_classes, kind=kind, in_channels=info.in_channels)


def check_model_fits(model: str, kind: str, info) -> None:
    """Raise ValueError unless ``model`` (a ``build_model`` name) runs on ``info``'s images (a
    DatasetInfo), found by a forward pass on the meta device."""
    net = _meta_model(model, kind, info).eval()
    try:
        with torch.no_grad():
            net(torch.empty((2, info.in_channels, *info.image_size), device="meta"))
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{model} cannot take the {info.in_channels}x{info.image_size[0]}x{info.image_size[1]} "
                         f"images of {info.name} ({first})") from None


def check_config_run(cfg, loaders) -> None:
    """All of the above for a resolved ``TrainConfig`` and its (train, test, info) loaders (each kind
    of ``kind='both'``); raises ValueError (``CheckpointError`` for a checkpoint) with the first
    problem found. The image size is the first training image's, not only what the format promises
    (an MNIST root of 5x5 IDX files)."""
    from .configured import _RESUME_MUST_MATCH, _resume_arg
    from .engine import _resume_path

    train, _, info = loaders
    first = train.dataset[0][0] if len(train.dataset) else None
    if isinstance(first, torch.Tensor) and first.dim() == 3:
        info = dataclasses.replace(info, in_channels=first.shape[0], image_size=tuple(first.shape[-2:]))
    kinds = ("adder", "conv") if cfg.kind == "both" else (cfg.kind,)
    for kind in kinds:
        check_model_fits(cfg.model, kind, info)
        sub, resume = cfg, _resume_arg(cfg)
        if cfg.kind == "both":
            resume = os.path.join(cfg.resume, kind) if isinstance(cfg.resume, str) and cfg.resume else cfg.resume
            sub = dataclasses.replace(cfg, kind=kind, out=os.path.join(cfg.out, kind), resume=resume)
        path, _ = _resume_path(resume, sub.out)
        if path is None or not os.path.isfile(path):
            continue
        ck = load_checkpoint(path)
        check_run_checkpoint(ck, path)
        config_mismatch(path, ck["config"], sub.to_dict(), _RESUME_MUST_MATCH)
        check_run_checkpoint(ck, path, model=_meta_model(cfg.model, kind, info))
