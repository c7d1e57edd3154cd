"""Whole models, the CNN against the AdderNet per backend: inference and one training step (forward,
cross-entropy, backward, SGD step). One group per model and mode; baseline 'conv'."""
import pytest
import torch

from addernet import backends
from addernet.bench.counts import count_ops
from addernet.bench.model_bench import model_fns
from addernet.models import get_model
from addernet.models.registry import model_spec
from suite import SIZES, setup_of

MODES = ("inference", "train_step")


def _adder_taps(name: str, batch: int) -> float:
    spec = model_spec(name)
    adder = get_model(name, kind="adder", num_classes=spec.num_classes, in_channels=spec.input_size[0])
    return count_ops(adder, (1, *spec.input_size)).totals(("adder",))["taps"] * batch


def _cases(setup):
    for name, batch in SIZES[setup.size]["models"]:
        taps = _adder_taps(name, batch)
        for mode in MODES:
            for cand in ("conv", *setup.adder_backends(taps)):
                yield pytest.param((name, batch, mode, cand, taps), id=f"{name}-b{batch}-{mode}-{cand}")


def pytest_generate_tests(metafunc):
    if "model_case" in metafunc.fixturenames:
        metafunc.parametrize("model_case", list(_cases(setup_of(metafunc.config))))


def _with_backend(be, fn):
    def run():
        with backends.use_backend(be):
            fn()
    return run


def _build(name, batch, mode, adders, device):
    spec = model_spec(name)
    torch.manual_seed(0)
    x = torch.randn(batch, *spec.input_size, device=device)
    out = {}
    for kind in ("conv", "adder"):
        model = get_model(name, kind=kind, num_classes=spec.num_classes, in_channels=spec.input_size[0]).to(device)
        fwd, train = model_fns(model, x, spec.num_classes)
        fn = fwd if mode == "inference" else train
        if kind == "conv":
            out["conv"] = fn
        else:
            out.update({be: _with_backend(be, fn) for be in adders})
    return out


def test_model(model_case, bench_setup, compare):
    name, batch, mode, cand, taps = model_case
    adders = bench_setup.adder_backends(taps)
    compare(f"model {mode} {name}, batch {batch}", lambda: _build(name, batch, mode, adders, bench_setup.device),
            "conv", cand, model=name, batch=batch, input_shape=list(model_spec(name).input_size), mode=mode,
            dtype="float32")
