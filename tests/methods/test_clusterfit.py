"""methods.clusterfit: pseudo-labels (shape, range, file), the features' normalisation and PCA, the
noisy labels N_pre trains on, N_cf's augmentation, and seconds-long CLI runs in both kinds.
(k-means recovery, faiss/torch agreement by ARI and the probe on separable features are tested
once, in tests/methods/test_methods_common.py.)"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from methods.clusterfit import (CFAugment, PseudoLabels, check_pseudo_labels, fit_pca, l2_normalize,
                                make_pseudo_labels)
from methods.clusterfit.pseudo_labels import default_sample
from helpers.torchrun_job import run_torchrun

from helpers.paths import ROOT  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_faiss_thread")


def _blobs(n_per, k, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 5
    return torch.cat([c + 0.2 * torch.randn(n_per, d, generator=g) for c in centres])


# ----------------------------------------------------------------------------- pseudo-labels

@pytest.mark.parametrize("solver", ["torch", "auto"])
@pytest.mark.parametrize("k", [1, 7, 40])
def test_pseudo_labels_have_the_right_shape_and_range(solver, k):
    x = l2_normalize(_blobs(50, 7, 12))
    pl = make_pseudo_labels(x, k, solver=solver, config={"layer": "features"})
    assert pl.labels.shape == (350,) and pl.labels.dtype == torch.int64
    assert int(pl.labels.min()) >= 0 and int(pl.labels.max()) < k
    assert pl.centroids.shape == (k, 12) and pl.centroids.dtype == torch.float32
    assert pl.num_clusters == k and int(pl.cluster_sizes().sum()) == 350
    # every point carries the id of its nearest centroid
    d = torch.cdist(x, pl.centroids)
    assert torch.equal(d.gather(1, pl.labels[:, None]).squeeze(1), d.min(1).values)
    assert pl.config["k"] == k and pl.config["iters"] == 50 and pl.config["seed"] == 1234
    assert pl.config["layer"] == "features"


def test_sample_then_assign_labels_every_point():
    # faiss's rule, 256 points per centroid: 3 clusters fit on 768 of the 2000 points
    x = _blobs(400, 5, 8, seed=1)
    assert default_sample(2000, 3) == 768 and default_sample(2000, 10) is None
    pl = make_pseudo_labels(x, 3, solver="torch")
    assert pl.config["sample"] == 768
    assert pl.labels.shape == (2000,) and 0 <= int(pl.labels.min()) and int(pl.labels.max()) < 3


def test_pseudo_labels_round_trip_through_a_file(tmp_path):
    pl = make_pseudo_labels(_blobs(20, 4, 6), 4, solver="torch", config={"noise": 0.5})
    path = tmp_path / "sub" / "labels.pt"
    pl.save(path)
    back = PseudoLabels.load(path)
    assert torch.equal(back.labels, pl.labels) and torch.equal(back.centroids, pl.centroids)
    assert back.config == pl.config and back.config["noise"] == 0.5
    torch.save({"labels": pl.labels}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a ClusterFit pseudo-label file"):
        PseudoLabels.load(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        PseudoLabels.load(tmp_path / "missing.pt")


def test_bad_pseudo_labels_are_refused():
    c = torch.zeros(5, 3)
    with pytest.raises(ValueError, match=r"lie in \[0, 5\)"):
        check_pseudo_labels(torch.tensor([0, 5]), c)
    with pytest.raises(ValueError, match="lie in"):
        check_pseudo_labels(torch.tensor([-1, 2]), c)
    with pytest.raises(ValueError, match="int64"):
        check_pseudo_labels(torch.tensor([0.0, 1.0]), c)
    with pytest.raises(ValueError, match="for a dataset of 3"):
        check_pseudo_labels(torch.tensor([0, 1]), c, n=3)
    with pytest.raises(ValueError, match="K must be in 1..10"):
        make_pseudo_labels(torch.randn(10, 3), 11)


# ----------------------------------------------------------------------------- features

def test_l2_normalize_gives_unit_rows_as_vissl_does():
    x = torch.randn(64, 10) * 100
    y = l2_normalize(x)
    norms = y.norm(dim=1)
    assert torch.allclose(norms, torch.ones(64), atol=1e-6)
    # VISSL divides by (norm + 1e-5): a zero row stays zero instead of turning into NaN
    assert torch.equal(l2_normalize(torch.zeros(2, 3)), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="2-D"):
        l2_normalize(torch.zeros(3))


def test_pca_keeps_the_leading_directions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g) * torch.tensor([10.0, 5.0])
    x = torch.cat([x, 0.01 * torch.randn(500, 6, generator=g)], 1) @ torch.linalg.qr(torch.randn(8, 8, generator=g))[0]
    p = fit_pca(x, 2)
    z = p.apply(x)
    assert z.shape == (500, 2)
    # two directions hold almost all of the variance
    assert z.var(0).sum() / (x - x.mean(0)).var(0).sum() > 0.999
    w = fit_pca(x, 2, whiten=True).apply(x)
    assert torch.allclose(w.std(0), torch.ones(2), atol=0.01)
    with pytest.raises(ValueError, match="PCA dimension"):
        fit_pca(x, 9)


# ----------------------------------------------------------------------------- N_pre's noisy labels

@pytest.mark.parametrize("p", [0.0, 0.5, 0.8])
def test_noisy_labels_flip_at_rate_p_to_other_classes(p):
    from addernet.data import get_dataset
    clean = torch.as_tensor(np.asarray(get_dataset("mnist5k", train=True, augment=False).targets))
    for seed in (0, 1):
        noisy = torch.as_tensor(np.asarray(get_dataset("mnist5k", train=True, augment=False, label_noise=p,
                                                       noise_seed=seed).targets))
        n = len(clean)
        rate = float((noisy != clean).float().mean())
        # within 4 binomial standard errors (0 and exact for p = 0)
        assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12, (p, seed, rate)
        if p > 0:
            # a flipped label is drawn uniformly from the 9 other classes
            offsets = ((noisy - clean) % 10)[noisy != clean]
            counts = torch.bincount(offsets, minlength=10)
            assert counts[0] == 0
            expected = len(offsets) / 9
            assert ((counts[1:] - expected).abs() < 5 * math.sqrt(expected)).all(), counts


# ----------------------------------------------------------------------------- N_cf's augmentation

@pytest.mark.parametrize("channels", [1, 3])
def test_cf_augment_keeps_shape_dtype_and_range(channels):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, channels, 28, 28, generator=g)
    aug = CFAugment(crop_scale=(0.5, 1.0), flip=channels == 3)
    y = aug(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.equal(x, y)
    # seeded: the same generator state gives the same batch
    assert torch.equal(y, aug(x, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="crop_scale"):
        CFAugment(crop_scale=(0.0, 1.0))


# ----------------------------------------------------------------------------- CLI

def _cli(*args, timeout=600):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "methods.clusterfit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("kind", ["conv", "adder"])
def test_cli_miniature_smoke_run(tmp_path, kind):
    out = tmp_path / "run"
    js = tmp_path / "r.json"
    r = _cli("--quick", "--kind", kind, "--pre-epochs", "1", "--cf-epochs", "1", "--adder-pre-epochs", "1",
             "--adder-cf-epochs", "1", "--limit-batches", "2", "--out", str(out), "--json", str(js), "--no-progress")
    assert r.returncode == 0, r.stderr[-3000:]
    cells = json.loads(js.read_text())["cells"]
    keys = {"network", "kind", "noise", "K", "probe_acc", "mean", "std"}
    assert cells and all(set(c) == keys for c in cells)
    assert {c["kind"] for c in cells} == {kind}
    assert {c["network"] for c in cells} == {"pre", "cf", "random"}
    for c in cells:
        assert len(c["probe_acc"]) == 1 and all(0.0 <= a <= 100.0 for a in c["probe_acc"])
        assert (c["K"] is None) == (c["network"] != "cf")
        assert (c["noise"] is None) == (c["network"] == "random")
    assert (out / "clusterfit_noise.png").stat().st_size > 1000
    assert (out / "clusterfit.md").read_text().startswith("| network")
    # issue 27: a quick run says it cannot test the claim, and one seed prints no spread
    assert "too small to test the claim" in r.stdout and json.loads(js.read_text())["note"]
    assert "(1 seed)" in (out / "clusterfit.md").read_text()


def test_cli_stages_chain(tmp_path):
    pre, feats, labels, cf = tmp_path / "pre", tmp_path / "f.pt", tmp_path / "l.pt", tmp_path / "cf"
    common = ("--data", "digits", "--device", "cpu", "--no-progress")
    r = _cli("pretrain", *common, "--model", "tinynet", "--noise", "0.5", "--epochs", "1", "--out", str(pre))
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("features", *common, "--checkpoint", str(pre / "model.pt"), "--out", str(feats))
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("cluster", "--features", str(feats), "--k", "12", "--solver", "torch", "--out", str(labels))
    assert r.returncode == 0, r.stderr[-3000:]
    pl = PseudoLabels.load(labels)
    assert pl.labels.shape == (1437,) and pl.num_clusters == 12
    r = _cli("fit", *common, "--model", "tinynet", "--labels", str(labels), "--epochs", "1", "--no-flip",
             "--crop-scale", "0.5", "1", "--out", str(cf))
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("probe", *common, "--checkpoint", str(cf / "model.pt"), "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert 0 <= json.loads((tmp_path / "p.json").read_text())["probe_acc"] <= 100


@pytest.mark.parametrize("args, message", [
    (("cluster", "--features", "nope.pt", "--k", "3", "--out", "x.pt"), "--features nope.pt does not exist"),
    (("--quick", "--data", "no-such-data"), "unknown dataset"),
    (("--quick", "--pre-epochs", "0"), "--pre-epochs must be at least 1"),
    (("probe", "--checkpoint", "nope.pt"), "--checkpoint nope.pt does not exist"),
])
def test_cli_user_mistakes_exit_2_with_one_line(args, message):
    r = _cli(*args, timeout=120)
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_features_under_torchrun_match_one_process(tmp_path):
    # Two gloo processes each extract a strided shard of the 1437 digits (719 + 718 rows, so the
    # padding of the gather is exercised) and must hand back exactly the one-process matrix.
    from addernet.train import build_model
    torch.manual_seed(0)
    net = build_model("tinynet", num_classes=10, kind="conv", in_channels=1)
    ckpt = tmp_path / "model.pt"
    torch.save({"format": "clusterfit-model/1", "model": "tinynet", "kind": "conv", "num_classes": 10,
                "in_channels": 1, "state_dict": net.state_dict()}, ckpt)
    one = tmp_path / "one.pt"
    args = ("features", "--data", "digits", "--device", "cpu", "--checkpoint", str(ckpt), "--no-progress",
            "--batch-size", "100")
    r = _cli(*args, "--out", str(one))
    assert r.returncode == 0, r.stderr[-3000:]
    two = tmp_path / "two.pt"
    run_torchrun(["-m", "methods.clusterfit", *args, "--distributed", "--out", str(two)], timeout=600, cwd=ROOT)
    a = torch.load(one, weights_only=True)
    b = torch.load(two, weights_only=True)
    assert a["features"].shape == (1437, a["features"].shape[1]) and torch.equal(a["labels"], b["labels"])
    assert torch.allclose(a["features"], b["features"], atol=1e-6)


def test_random_pseudo_labels_are_a_seeded_uniform_control():
    from methods.clusterfit import random_pseudo_labels
    a = random_pseudo_labels(5000, 50, seed=3)
    assert a.labels.shape == (5000,) and a.num_clusters == 50 and a.config["random"]
    assert torch.equal(a.labels, random_pseudo_labels(5000, 50, seed=3).labels)
    sizes = a.cluster_sizes().float()
    assert sizes.min() > 0 and (sizes - 100).abs().max() < 5 * 10   # 5 binomial stds of 100 +- 10


def test_feature_crop_is_vissls_center_crop_by_default():
    # VISSL's ImageNet extraction config: Resize(256) + CenterCrop(224), deterministic (issue 27)
    from methods.clusterfit.features import center_crop_fn, cluster_features
    x = torch.rand(3, 1, 16, 16)
    crop = center_crop_fn(0.5)
    out = crop(x)
    assert torch.equal(out, crop(x))   # deterministic
    expected = torch.nn.functional.interpolate(x[..., 4:12, 4:12], size=(16, 16), mode="bilinear",
                                               align_corners=False)
    assert torch.allclose(out, expected)
    with pytest.raises(ValueError, match="crop_mode"):
        cluster_features(torch.nn.Identity(), [], crop=0.5, crop_mode="middle")
