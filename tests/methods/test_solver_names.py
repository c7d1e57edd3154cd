"""The methods' non-op choices are ``solver=`` (``backend`` is the adder op's word in addernet);
the old keyword keeps working, with a DeprecationWarning, for one release."""
from __future__ import annotations

import pytest
import torch

import methods.common as mc
from methods.clusterfit import make_pseudo_labels


def _blobs():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 4, generator=g) * 6
    x = torch.cat([c + 0.2 * torch.randn(30, 4, generator=g) for c in centres])
    return x, torch.arange(3).repeat_interleave(30)


def test_kmeans_backend_keyword_is_solver_with_a_warning():
    x, _ = _blobs()
    new = mc.kmeans(x, 3, solver="torch", seed=0)
    with pytest.warns(DeprecationWarning, match=r"kmeans\(backend=...\) is now kmeans\(solver=...\)"):
        old = mc.kmeans(x, 3, backend="torch", seed=0)
    assert new.solver == old.solver == "torch" and torch.equal(new.labels, old.labels)
    with pytest.warns(DeprecationWarning, match="KMeansResult.solver"):
        assert old.backend == "torch"
    with pytest.raises(TypeError, match="give solver= only"):
        mc.kmeans(x, 3, backend="torch", solver="faiss")
    with pytest.raises(ValueError, match="solver must be"), pytest.warns(DeprecationWarning):
        mc.kmeans(x, 3, backend="sklearn")


def test_linear_probe_backend_keyword_is_solver_with_a_warning():
    x, y = _blobs()
    with pytest.warns(DeprecationWarning, match=r"linear_probe\(backend=...\)"):
        old = mc.linear_probe(x[::2], y[::2], x[1::2], y[1::2], backend="sklearn")
    assert old == mc.linear_probe(x[::2], y[::2], x[1::2], y[1::2], solver="sklearn") == 1.0
    with pytest.raises(TypeError, match="linear_probe\\(solver='sklearn'\\) got unexpected keywords"):
        mc.linear_probe(x[::2], y[::2], x[1::2], y[1::2], solver="sklearn", epochs=3)


def test_pseudo_labels_record_the_solver():
    x, _ = _blobs()
    with pytest.warns(DeprecationWarning, match=r"make_pseudo_labels\(backend=...\)"):
        old = make_pseudo_labels(x, 3, backend="torch")
    new = make_pseudo_labels(x, 3, solver="torch")
    assert old.config["solver"] == new.config["solver"] == "torch" and "backend" not in new.config
    assert torch.equal(old.labels, new.labels)


def test_cluster_stage_takes_solver_and_still_reads_backend():
    from methods.clusterfit.__main__ import build_parser

    common = ["cluster", "--features", "f.pt", "--k", "3", "--out", "l.pt"]
    assert build_parser().parse_args([*common, "--solver", "torch"]).solver == "torch"
    assert build_parser().parse_args([*common, "--backend", "faiss"]).solver == "faiss"
    assert build_parser().parse_args(common).solver == "auto"
