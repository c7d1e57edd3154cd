"""DDP plumbing for runs launched by torchrun: process group from the environment, rank-0-only
output, summed metrics."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or (dist.is_available() and dist.is_initialized())

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str | None) -> tuple[DistEnv, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Backend: nccl for CUDA, gloo for CPU. Each process takes cuda:LOCAL_RANK unless ``device`` names
    the CPU. Joining is skipped when the group already exists (a caller set it up).
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise RuntimeError("--distributed needs torchrun (RANK and WORLD_SIZE unset): "
                           "python -m torch.distributed.run --nproc_per_node=N -m addernet.cli train ...")
    env = DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    dev = torch.device("cuda", env.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=env.rank, world_size=env.world_size)
    return env, dev


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    return not active() or dist.get_rank() == 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In place sum over ranks (no-op single-process). gloo reduces on the CPU, nccl on the GPU."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank 0's BatchNorm statistics.

    DDP broadcasts buffers at the start of each forward, so after the last training step every rank
    holds statistics from its own last batch: evaluation and the checkpoint would disagree by rank.
    """
    if active():
        for b in model.buffers():
            dist.broadcast(b, src)


def wrap(module: nn.Module, device: torch.device | None = None) -> nn.Module:
    """``module`` in DistributedDataParallel when several ranks are active, else ``module`` itself.

    For a second network a step trains with its own optimiser (a discriminator): wrapped, its
    gradients are averaged over ranks as the main model's are. Checkpoint the unwrapped module.
    """
    if not active():
        return module
    dev = device if device is not None else next(module.parameters()).device
    return nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)


def gather_objects(obj):
    """A list of ``obj`` from every rank (``[obj]`` single-process)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
