"""IGAM under DDP on CPU: two gloo processes started by torchrun run this file as a script
(``worker``); the tests check what they wrote. Double backprop through a DDP-wrapped student must
give the full batch's update, and every rank's discriminator must stay the same."""
import os
import sys

import pytest
import torch
from torch import nn
from helpers.torchrun_job import run_torchrun

BATCH = 16


def _student():
    # No BatchNorm: per-rank batch statistics would differ from the full batch's.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10 * 10, 5))


def _teacher():
    torch.manual_seed(7)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.Softplus(), nn.Flatten(), nn.Linear(3 * 10 * 10, 5))


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(BATCH, 1, 12, 12, generator=g), torch.randint(0, 5, (BATCH,), generator=g)


def _ldiff_step(model, batches):
    from addernet.train import train_one_epoch
    from methods.igam import IGAMStep

    step = IGAMStep(_teacher(), beta=0.0, gamma=1.0, reduction="batchmean")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    train_one_epoch(model, batches, opt, None, "cpu", step=step, progress=False)
    return {k: v.detach().clone() for k, v in getattr(model, "module", model).state_dict().items()}


def worker(out):
    import torch.distributed as dist

    from addernet.train import train_one_epoch
    from methods.igam import GradientDiscriminator, IGAMStep

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = _batch()
    half = BATCH // world
    mine = [(x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half])]
    # 1) L_diff only: the DDP update equals the single-process update on the whole batch.
    state = _ldiff_step(nn.parallel.DistributedDataParallel(_student()), mine)
    torch.save(state, os.path.join(out, f"ldiff{rank}.pt"))
    if rank == 0:
        torch.save(_ldiff_step(_student(), [(x, y)]), os.path.join(out, "ldiff_full.pt"))
    # 2) full IGAM: D steps on each rank (step index 0) with averaged gradients, so the copies agree.
    torch.manual_seed(3)
    step = IGAMStep(_teacher(), beta=1.0, gamma=1.0, discriminator=GradientDiscriminator((1, 12, 12), blocks=2))
    model = nn.parallel.DistributedDataParallel(_student())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = {k: v.clone() for k, v in step.discriminator.state_dict().items()}
    train_one_epoch(model, mine * 2, opt, None, "cpu", step=step, callbacks=step.callbacks(), progress=False)
    disc = step.discriminator.state_dict()
    moved = any(not torch.equal(disc[k], before[k]) for k in before if k.endswith("weight"))
    torch.save({"disc": disc, "moved": moved, "steps": step.steps}, os.path.join(out, f"igam{rank}.pt"))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("igam_ddp")
    run_torchrun([__file__, str(out)], timeout=300)
    return out


def test_ddp_double_backprop_step_equals_the_full_batch_step(ddp_out):
    want = torch.load(ddp_out / "ldiff_full.pt", weights_only=True)
    start = _student().state_dict()
    for rank in (0, 1):
        got = torch.load(ddp_out / f"ldiff{rank}.pt", weights_only=True)
        for k, v in want.items():
            assert not torch.equal(v, start[k]), k
            torch.testing.assert_close(got[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_ddp_discriminator_copies_stay_equal(ddp_out):
    a, b = (torch.load(ddp_out / f"igam{r}.pt", weights_only=True) for r in (0, 1))
    assert a["moved"] and b["moved"] and a["steps"] == b["steps"] == 2
    for k, v in a["disc"].items():
        if "running" in k or "num_batches" in k:
            continue   # BatchNorm statistics are per rank, as DDP's own BatchNorm buffers are between syncs
        torch.testing.assert_close(b["disc"][k], v, msg=k)


if __name__ == "__main__":
    worker(sys.argv[1])
