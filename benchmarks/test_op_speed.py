"""The adder op against F.conv2d at the paper's layer shapes, per backend: forward, and forward +
backward. One group per layer and pass; baseline 'conv'."""
import pytest

from addernet.bench.op_table import candidates
from addernet.bench.shapes import LAYER_SETS
from suite import SIZES, case_id, setup_of

MODES = ("fwd", "fwdbwd")


def _cases(setup):
    for set_name, batch in SIZES[setup.size]["op_sets"]:
        for shape in LAYER_SETS[set_name](batch):
            for mode in MODES:
                for name in ("conv", *setup.adder_backends(shape.taps)):
                    yield pytest.param((set_name, shape, mode, name),
                                       id=case_id(set_name, shape.name, f"b{batch}", mode, name))


def pytest_generate_tests(metafunc):
    if "op_case" in metafunc.fixturenames:
        metafunc.parametrize("op_case", list(_cases(setup_of(metafunc.config))))


def test_op(op_case, bench_setup, compare):
    set_name, shape, mode, name = op_case
    group = f"op {mode} {set_name}: {shape.name}, batch {shape.batch}"
    adders = bench_setup.adder_backends(shape.taps)
    compare(group, lambda: candidates(shape, adders, mode, device=bench_setup.device), "conv", name,
            shape={"set": set_name, **shape.__dict__}, mode=mode, dtype="float32")
