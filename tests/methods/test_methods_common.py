"""methods.common: k-means (faiss and torch), linear probe, few-shot episodes, attacks, feature
extraction and the report writer, on synthetic data and sklearn digits (small, fast, seeded)."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.metrics import adjusted_rand_score

from methods import common as mc
from methods.common import report
from methods.common.kmeans import faiss_available

SOLVERS = ["torch"] + (["faiss"] if faiss_available() else [])
needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss is not installed")


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def _blobs(n_per, k, d, spread, sep, seed):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * sep
    x = torch.cat([centres[i] + spread * torch.randn(n_per, d, generator=g) for i in range(k)])
    return x, torch.arange(k).repeat_interleave(n_per)


# --------------------------------------------------------------------- k-means

@pytest.mark.parametrize("solver", SOLVERS)
def test_kmeans_recovers_separated_clusters(solver):
    x, y = _blobs(200, 6, 8, spread=0.3, sep=4.0, seed=1)
    r = mc.kmeans(x, 6, solver=solver, seed=0)
    assert r.solver == solver
    assert r.centroids.shape == (6, 8) and r.centroids.dtype == torch.float32
    assert r.labels.shape == (1200,) and r.labels.dtype == torch.int64
    assert adjusted_rand_score(y.numpy(), r.labels.numpy()) > 0.99
    # the inertia is the sum of squared distances of every row to its own centroid
    own = ((x - r.centroids[r.labels]) ** 2).sum()
    assert r.inertia == pytest.approx(float(own), rel=1e-4)


@needs_faiss
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faiss_and_torch_agree_by_ari_and_inertia(seed):
    # Overlapping clusters, so that a run can stop in a local minimum (two clusters merged, one split).
    # From the same seeding the two Lloyd implementations must reach the same partition, good or bad.
    x, _ = _blobs(300, 5, 16, spread=1.0, sep=2.0, seed=3)
    rf = mc.kmeans(x, 5, solver="faiss", seed=seed)
    rt = mc.kmeans(x, 5, solver="torch", seed=seed)
    assert adjusted_rand_score(rf.labels.numpy(), rt.labels.numpy()) > 0.95
    assert rt.inertia == pytest.approx(rf.inertia, rel=0.01)


def test_kmeans_restarts_keep_the_least_inertia():
    x, _ = _blobs(300, 5, 16, spread=1.0, sep=2.0, seed=3)
    single = mc.kmeans(x, 5, solver="torch", seed=0)
    best = mc.kmeans(x, 5, solver="torch", seed=0, n_init=3)
    # the restarts continue seed 0's generator, so the first start is seed 0's single run
    assert best.inertia <= single.inertia + 1e-6


@pytest.mark.parametrize("solver", SOLVERS)
def test_kmeans_fixed_seed_is_reproducible(solver):
    x, _ = _blobs(100, 4, 5, spread=1.0, sep=1.5, seed=4)
    a = mc.kmeans(x, 4, solver=solver, seed=7)
    b = mc.kmeans(x, 4, solver=solver, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.labels, b.labels)


def test_assign_picks_the_nearest_centroid():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(1000, 12, generator=g), torch.randn(17, 12, generator=g)
    labels, dist = mc.assign(x, c, batch_size=97)  # batches that do not divide n
    d2 = torch.cdist(x.double(), c.double()) ** 2
    assert torch.equal(labels, d2.argmin(1))
    torch.testing.assert_close(dist.double(), d2.min(1).values, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="dimension"):
        mc.assign(x, torch.randn(3, 5))


@pytest.mark.parametrize("solver", SOLVERS)
def test_spherical_kmeans_normalises(solver):
    # clusters by direction only; each row gets a random scale in [0.1, 10]
    g = torch.Generator().manual_seed(5)
    dirs = torch.nn.functional.normalize(torch.randn(4, 10, generator=g), dim=1)
    y = torch.arange(4).repeat_interleave(150)
    x = dirs[y] + 0.05 * torch.randn(600, 10, generator=g)
    scaled = x * torch.exp(torch.empty(600, 1).uniform_(math.log(0.1), math.log(10), generator=g))
    r = mc.kmeans(scaled, 4, solver=solver, seed=0, spherical=True)
    torch.testing.assert_close(r.centroids.norm(dim=1), torch.ones(4), rtol=1e-4, atol=1e-4)
    assert adjusted_rand_score(y.numpy(), r.labels.numpy()) > 0.99
    # rescaling rows changes nothing in spherical mode
    r2 = mc.kmeans(x, 4, solver=solver, seed=0, spherical=True)
    assert torch.equal(r.labels, r2.labels)
    labels, dist = mc.assign(scaled, r.centroids, spherical=True)
    assert torch.equal(labels, r.labels) and float(dist.max()) <= 4.0 + 1e-5


@pytest.mark.parametrize("solver", SOLVERS)
def test_kmeans_on_a_memmap_sample_assigns_every_row(tmp_path, solver):
    x, y = _blobs(500, 5, 6, spread=0.3, sep=4.0, seed=6)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=tuple(x.shape))
    mm[:] = x.numpy()
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    r = mc.kmeans(mm, 5, solver=solver, seed=0, sample=300, batch_size=333)
    assert r.labels.shape == (2500,)
    assert adjusted_rand_score(y.numpy(), r.labels.numpy()) > 0.99
    labels, dist = mc.assign(x, r.centroids)
    assert torch.equal(labels, r.labels)
    assert r.inertia == pytest.approx(float(dist.double().sum()), rel=1e-6)


def test_torch_kmeans_survives_more_clusters_than_distinct_points():
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0]]).repeat(50, 1)
    r = mc.kmeans(x, 4, solver="torch", seed=0)
    assert torch.isfinite(r.centroids).all()
    assert r.inertia == pytest.approx(0.0, abs=1e-6)
    assert set(r.labels.unique().tolist()) <= set(range(4))


def test_kmeans_rejects_bad_input():
    with pytest.raises(ValueError, match="k=11"):
        mc.kmeans(torch.randn(10, 2), 11)
    with pytest.raises(ValueError, match="2-D"):
        mc.kmeans(torch.randn(10), 2)
    with pytest.raises(ValueError, match="non-finite"):
        mc.kmeans(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match="solver"):
        mc.kmeans(torch.randn(10, 2), 2, solver="sklearn")


# --------------------------------------------------------------------- linear probe

@pytest.mark.parametrize("kw", [dict(solver="sklearn"), dict(solver="torch"),
                                dict(solver="torch", optimizer="adam", epochs=30, batch_size=128)])
def test_linear_probe_separable_features(kw):
    x, y = _blobs(200, 4, 20, spread=0.5, sep=3.0, seed=7)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    acc = mc.linear_probe(x[:500], y[:500], x[500:], y[500:], seed=0, **kw)
    assert acc >= 0.99


@pytest.mark.parametrize("solver", ["sklearn", "torch"])
def test_linear_probe_chance_on_random_labels(solver):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4000, 16, generator=g)
    y = torch.randint(4, (4000,), generator=g)
    acc = mc.linear_probe(x[:2000], y[:2000], x[2000:], y[2000:], solver=solver)
    assert abs(acc - 0.25) < 0.05


def test_linear_probe_solvers_agree_and_unknown_test_labels_count_wrong():
    x, y = _blobs(150, 3, 10, spread=1.0, sep=0.8, seed=9)  # overlapping: accuracy well below 1
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    x, y = x[perm], y[perm]
    a_sk = mc.linear_probe(x[:300], y[:300], x[300:], y[300:], solver="sklearn")
    a_t = mc.linear_probe(x[:300], y[:300], x[300:], y[300:], solver="torch")
    assert 0.4 < a_sk < 0.98 and abs(a_sk - a_t) <= 0.02
    y_test = y[300:].clone()
    y_test[:50] = 99  # a class the probe never saw
    assert mc.linear_probe(x[:300], y[:300], x[300:], y_test, solver="torch") <= a_t - 50 / 150 + 0.02
    with pytest.raises(ValueError, match="features"):
        mc.linear_probe(x[:300], y[:300], x[300:, :5], y[300:])


# --------------------------------------------------------------------- few-shot

def test_fewshot_separated_classes_near_perfect():
    x, y = _blobs(30, 20, 32, spread=0.2, sep=1.0, seed=10)
    mean, ci = mc.fewshot_eval(x, y, n_way=5, k_shot=1, n_query=10, episodes=200, seed=0)
    assert mean > 0.99 and 0 <= ci < 0.01


def test_fewshot_random_features_at_chance_and_seeded():
    g = torch.Generator().manual_seed(11)
    x, y = torch.randn(600, 32, generator=g), torch.arange(20).repeat_interleave(30)
    mean, ci = mc.fewshot_eval(x, y, n_way=5, k_shot=5, n_query=15, episodes=300, seed=0)
    assert abs(mean - 0.2) < 0.03 and 0 < ci < 0.03
    assert mc.fewshot_eval(x, y, n_way=5, k_shot=5, n_query=15, episodes=300, seed=0) == (mean, ci)
    assert mc.fewshot_eval(x, y, n_way=5, k_shot=5, n_query=15, episodes=300, seed=1) != (mean, ci)


def test_fewshot_interval_is_1_96_std_over_sqrt_episodes():
    # 2-way 1-shot 1-query: every episode scores 0, 0.5 or 1; recompute from the same episodes
    from methods.common.fewshot import _episode_indices
    g = torch.Generator().manual_seed(12)
    x, y = torch.randn(40, 4, generator=g), torch.arange(4).repeat_interleave(10)
    mean, ci = mc.fewshot_eval(x, y, n_way=2, k_shot=1, n_query=1, episodes=50, seed=3)
    f = torch.nn.functional.normalize(x, dim=1)
    accs = []
    for ep in _episode_indices(y.numpy(), 2, 1, 1, 50, 3):
        protos, queries = f[ep[:, 0]], f[ep[:, 1]]
        accs.append(float(((queries @ protos.T).argmax(1) == torch.arange(2)).float().mean()))
    assert mean == pytest.approx(np.mean(accs))
    assert ci == pytest.approx(1.96 * np.std(accs, ddof=1) / math.sqrt(50))


def test_fewshot_rejects_too_few_classes():
    x, y = torch.randn(40, 4), torch.arange(4).repeat_interleave(10)
    with pytest.raises(ValueError, match="5 classes"):
        mc.fewshot_eval(x, y, n_way=5, k_shot=1, n_query=5)
    with pytest.raises(ValueError, match="at least 16 rows"):
        mc.fewshot_eval(x, y, n_way=2, k_shot=1, n_query=15)


# --------------------------------------------------------------------- attacks

class _TinyConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def digits_model():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # pixel space [0, 1]
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = _TinyConv()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):  # full batch on the first 1297 images
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[:1297]), y[:1297]).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    return model, x[1297:], y[1297:]


def _acc(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_pgd_hurts_more_than_random_noise(digits_model):
    model, x, y = digits_model
    eps = 0.1
    clean = _acc(model, x, y)
    g = torch.Generator().manual_seed(0)
    noise = (x + eps * torch.randint(0, 2, x.shape, generator=g).float().mul(2).sub(1)).clamp(0, 1)
    acc_noise = _acc(model, noise, y)
    acc_fgsm = _acc(model, mc.fgsm(model, x, y, eps=eps), y)
    acc_pgd = _acc(model, mc.pgd(model, x, y, eps=eps, steps=10, generator=torch.Generator().manual_seed(0)), y)
    assert clean > 0.9
    assert acc_pgd < acc_noise - 0.3
    assert acc_pgd <= acc_fgsm + 0.02 and acc_fgsm < acc_noise


def test_attack_iterates_stay_in_ball_and_range(digits_model):
    model, x, y = digits_model
    x = x[:64]
    y = y[:64]
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # pixels at both ends of the range
    for eps in (0.03, 0.3):
        for adv in (mc.pgd(model, x, y, eps=eps, steps=5, alpha=eps),  # alpha large: projection is exercised
                    mc.pgd(model, x, y, eps=eps, steps=1, random_start=True, generator=torch.Generator()),
                    mc.fgsm(model, x, y, eps=eps)):
            assert float((adv - x).abs().max()) <= eps + 1e-6
            assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
            assert not adv.requires_grad


def test_attacks_restore_mode_leave_grads_and_reproduce(digits_model):
    model, x, y = digits_model
    x, y = x[:16], y[:16]
    model.train()
    model.bn.eval()  # a frozen BN inside a training model must stay frozen
    stats = model.bn.running_mean.clone()
    try:
        a = mc.pgd(model, x, y, eps=0.1, steps=3, generator=torch.Generator().manual_seed(1))
        b = mc.pgd(model, x, y, eps=0.1, steps=3, generator=torch.Generator().manual_seed(1))
        assert model.training and model.conv.training and not model.bn.training
        assert torch.equal(a, b) and torch.equal(stats, model.bn.running_mean)
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()


def test_attacks_reject_normalised_input(digits_model):
    model, x, y = digits_model
    with pytest.raises(ValueError, match=r"pixel space \[0, 1\]"):
        mc.pgd(model, (x[:4] - 0.5) / 0.5, y[:4], eps=0.1)
    with pytest.raises(ValueError, match="eps"):
        mc.fgsm(model, x[:4], y[:4], eps=-1.0)


# --------------------------------------------------------------------- features

class _NoMore(nn.Module):
    def forward(self, x):
        raise AssertionError("the forward pass should have stopped at the hooked layer")


def _loader(x, y, bs):
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]


def test_extract_features_from_a_layer_clones_and_stops():
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("conv", nn.Conv2d(3, 4, 3, padding=1))
    model.add_module("relu", nn.ReLU(inplace=True))  # would overwrite an uncloned conv output
    model.add_module("stop", _NoMore())
    x, y = torch.randn(10, 3, 5, 5), torch.arange(10)
    model.train()
    feats, labels = mc.extract_features(model, _loader(x, y, 4), layer="conv")
    with torch.no_grad():
        ref = model.conv(x)
    assert feats.shape == (10, 4 * 25) and feats.dtype == torch.float32
    torch.testing.assert_close(feats, ref.flatten(1))
    assert float(feats.min()) < 0  # the in-place ReLU did not reach the captured tensor
    assert torch.equal(labels, y) and model.training
    avg, _ = mc.extract_features(model, _loader(x, y, 4), layer="conv", pool="avg")
    torch.testing.assert_close(avg, ref.mean((2, 3)))
    with pytest.raises(ValueError, match="no module named 'fc'"):
        mc.extract_features(model, _loader(x, y, 4), layer="fc")


def test_extract_features_from_a_function_and_unlabelled_batches():
    x = torch.randn(7, 2, 3, 3)
    feats, labels = mc.extract_features(lambda t: t * 2, [x[:5], x[5:]])
    torch.testing.assert_close(feats, (x * 2).flatten(1))
    assert labels is None


def test_extract_features_on_an_addernet_model():
    import addernet.models
    torch.manual_seed(0)
    net = addernet.models.lenet5_bn(kind="adder")
    x, y = torch.rand(6, 1, 28, 28), torch.arange(6)
    feats, labels = mc.extract_features(net, _loader(x, y, 3), layer="conv1", pool="avg")
    with torch.no_grad():
        ref = net.eval().conv1(x).mean((2, 3))
    torch.testing.assert_close(feats, ref)
    assert torch.equal(labels, y)


# --------------------------------------------------------------------- report

def test_write_json_is_atomic_and_writes_json_types(tmp_path):
    path = tmp_path / "runs" / "run.json"
    report.write_json(path, {"acc": torch.tensor(0.5), "arr": np.arange(3), "ci": float("nan"),
                             "n": np.int64(4), "where": tmp_path})
    assert json.loads(path.read_text()) == {"acc": 0.5, "arr": [0, 1, 2], "ci": None, "n": 4, "where": str(tmp_path)}
    assert path.read_text().startswith("{\n  ")
    with pytest.raises(TypeError, match="object"):
        report.write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["acc"] == 0.5  # a failed write left the old file
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.json"]  # no temp file behind


def test_save_figure_writes_png(tmp_path):
    fig = report.figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    out = report.save_figure(fig, tmp_path / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="PNG"):
        report.save_figure(fig, tmp_path / "f.pdf")


def test_table_markdown():
    rows = [{"kind": "adder", "acc": 91.234, "note": "a|b"}, {"kind": "conv", "acc": float("nan")}]
    assert report.table_markdown(rows, ["kind", ("acc", "acc (%)"), "note"]) == (
        "| kind | acc (%) | note |\n|---|---|---|\n| adder | 91.23 | a\\|b |\n| conv |  |  |\n")
    assert report.mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3, "values": [1.0, 2.0, 3.0]}


# --------------------------------------------------------------------- GPU (skipped on a CPU-only box)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_paths_match_cpu():
    x, y = _blobs(200, 4, 8, spread=0.3, sep=4.0, seed=13)
    rc = mc.kmeans(x, 4, solver="torch", seed=0)
    rg = mc.kmeans(x.cuda(), 4, solver="torch", seed=0)
    assert rg.labels.device.type == "cpu" and adjusted_rand_score(rc.labels.numpy(), rg.labels.numpy()) > 0.99
    assert rg.inertia == pytest.approx(rc.inertia, rel=1e-3)
    m_c = mc.fewshot_eval(x, y, n_way=3, k_shot=1, n_query=5, episodes=50, seed=0)
    m_g = mc.fewshot_eval(x.cuda(), y, n_way=3, k_shot=1, n_query=5, episodes=50, seed=0)
    assert m_c == pytest.approx(m_g)
    acc = mc.linear_probe(x[::2], y[::2], x[1::2], y[1::2], solver="torch", device="cuda")
    assert acc >= 0.99
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).cuda()
    xi = torch.rand(8, 1, 3, 4, device="cuda")
    yi = torch.randint(3, (8,), device="cuda")
    adv = mc.pgd(model, xi, yi, eps=0.05, steps=3, generator=torch.Generator().manual_seed(0))
    assert adv.device.type == "cuda" and float((adv - xi).abs().max()) <= 0.05 + 1e-6
