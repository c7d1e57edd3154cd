"""DDP on CPU: two gloo processes started by torchrun run this file as a script (``worker``); the
test checks what they wrote. One launch does both checks, because starting torch twice on a busy
machine is the slow part."""
import json
import os
import sys

import pytest
import torch
from torch import nn

from addernet import AdderConv2d
from addernet.data import get_dataset
from helpers.torchrun_job import run_torchrun

STEP_BATCH = 32


def _step_model():
    # No BatchNorm (per-rank batch statistics would differ from the full batch's) and eta=None
    # (the adaptive scaling normalises each rank's gradient before DDP averages them): with these two
    # out, DDP's averaged gradient must equal the full batch's.
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), AdderConv2d(4, 8, 3, bias=False, eta=None), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


def _step_batch():
    ds = get_dataset("digits", train=True, augment=False)
    xs, ys = zip(*(ds[i] for i in range(STEP_BATCH)))
    return torch.stack(xs), torch.tensor(ys)


def _one_step(model, batches):
    from addernet.train import build_optimizer, train_one_epoch

    opt = build_optimizer(model, lr=0.1)
    train_one_epoch(model, batches, opt, None, "cpu", progress=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def worker(out):
    import torch.distributed as dist

    from addernet.train import TrainConfig, fit
    from addernet.train.distributed import cleanup

    torch.set_num_threads(1)
    # 1) one DDP step on this rank's half of the batch
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    x, y = _step_batch()
    half = STEP_BATCH // world
    ddp = nn.parallel.DistributedDataParallel(_step_model())
    state = _one_step(ddp, [(x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half])])
    torch.save({k[len("module."):]: v for k, v in state.items()}, os.path.join(out, f"step{rank}.pt"))
    if rank == 0:  # the single-process step on the whole batch, for comparison
        torch.save(_one_step(_step_model(), [(x, y)]), os.path.join(out, "step_full.pt"))

    # 2) a short fit() under DDP; every rank saves what it ends with
    cfg = TrainConfig(model="tinynet", kind="adder", data="digits", epochs=1, batch_size=64, limit_batches=3,
                      distributed=True, progress=False, out=os.path.join(out, "run"))
    res = fit(cfg, log=None)
    torch.save(res.model.state_dict(), os.path.join(out, f"final{rank}.pt"))

    # 3) a two-optimiser custom step through fit(model, loaders) under DDP
    gan_fit(out, rank)
    cleanup()


class LocalMetrics:
    """Records what this rank's steps saw, to check the loop's average over ranks."""

    def __init__(self):
        self.rows = []

    def on_epoch_start(self, state):
        pass

    def on_step(self, state, out):
        self.rows.append((float(out.metrics["d_loss"]), float(out.metrics["loss"]), out.batch_size))

    def on_epoch_end(self, state, row):
        pass


def gan_fit(out, rank):
    from addernet.data import make_loaders
    from addernet.train import build_model, build_optimizer, fit
    from helpers.train_steps import AdversarialStep, make_discriminator

    train, _, _ = make_loaders("digits", None, 32, seed=0, distributed=True)
    _, test, info = make_loaders("digits", None, 64)  # every rank the whole test set: the mean is unchanged
    torch.manual_seed(0)
    model = build_model("tinynet", kind="adder")
    disc = make_discriminator()
    g_opt = build_optimizer(model, lr=0.05)
    d_opt = torch.optim.Adam(disc.parameters(), lr=1e-3)
    local = LocalMetrics()
    res = fit(model, (train, test, info), step=AdversarialStep(disc, d_opt, g_opt), optimizer=g_opt, epochs=1,
              limit_batches=3, distributed=True, out=os.path.join(out, "gan"), callbacks=[local],
              extra_state={"disc": disc, "disc_opt": d_opt}, progress=False, log=None)
    torch.save({"model": res.model.state_dict(), "disc": disc.state_dict(), "local": local.rows},
               os.path.join(out, f"gan{rank}.pt"))


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    run_torchrun([__file__, str(out)], timeout=180)
    return out


def test_ddp_step_equals_full_batch_step(ddp_out):
    want = torch.load(ddp_out / "step_full.pt", weights_only=True)
    for rank in (0, 1):
        got = torch.load(ddp_out / f"step{rank}.pt", weights_only=True)
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=f"rank {rank}: {k}")


def test_ddp_fit_ranks_agree_and_rank0_writes(ddp_out):
    a = torch.load(ddp_out / "final0.pt", weights_only=True)
    b = torch.load(ddp_out / "final1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k  # parameters and BN buffers
    run = ddp_out / "run"
    hist = json.loads((run / "metrics.json").read_text())
    assert [r["epoch"] for r in hist] == [1]
    # disjoint test shards: the summed accuracy is a count out of the 360 test images
    hits = hist[0]["test_acc"] * 360
    assert abs(hits - round(hits)) < 1e-6
    ck = torch.load(run / "last.pt", weights_only=True)
    assert len(ck["rng"]) == 2 and not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])
    assert not list(run.glob("*.tmp"))


def test_ddp_custom_step_ranks_agree_and_metrics_average_over_ranks(ddp_out):
    a = torch.load(ddp_out / "gan0.pt", weights_only=True)
    b = torch.load(ddp_out / "gan1.pt", weights_only=True)
    for part in ("model", "disc"):  # the discriminator's gradients were averaged as the model's
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    run = ddp_out / "gan"
    hist = json.loads((run / "metrics.json").read_text())
    seen = a["local"] + b["local"]
    assert len(seen) == 6 and {n for *_, n in seen} == {None}  # 3 steps per rank, batch 32 each
    want_d = sum(d for d, _, _ in seen) / len(seen)
    want_ce = sum(ce for _, ce, _ in seen) / len(seen)
    assert hist[0]["train_d_loss"] == pytest.approx(want_d, rel=1e-9)
    assert hist[0]["train_loss"] == pytest.approx(want_ce, rel=1e-9)
    # each rank evaluates the same 3 test batches of 64 (limit_batches): the mean is a count out of 192
    hits = hist[0]["test_acc"] * 192
    assert abs(hits - round(hits)) < 1e-6
    ck = torch.load(run / "last.pt", weights_only=True)
    assert set(ck["extra"]) == {"disc", "disc_opt"} and len(ck["rng"]) == 2
    for k, v in ck["extra"]["disc"].items():
        assert torch.equal(v, a["disc"][k])


if __name__ == "__main__":
    worker(sys.argv[1])
