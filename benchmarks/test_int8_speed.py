"""Integer inference: the AdderNet quantised by addernet.quantize (today's int8 path: uint8 adder
layers) against torch's own int8 CNN (the same network as a CNN, quantised by torch's FX graph mode
for its x86 engine), with the float32 CNN beside them. One group per model; baseline 'torch_int8_cnn'."""
import warnings

import pytest
import torch

from addernet.bench.int8 import int8_model, int8_unavailable_reason
from addernet.models import get_model
from addernet.models.registry import model_spec
from suite import SIZES, setup_of

CANDIDATES = ("torch_int8_cnn", "adder_int8", "cnn_f32")


def pytest_generate_tests(metafunc):
    if "int8_case" in metafunc.fixturenames:
        setup = setup_of(metafunc.config)
        metafunc.parametrize("int8_case", [pytest.param((name, batch, cand), id=f"{name}-b{batch}-{cand}")
                                           for name, batch in SIZES[setup.size]["models"] for cand in CANDIDATES])


def torch_int8_cnn(cnn, calib):
    """``cnn`` quantised by torch: FX graph mode, the x86 engine's default int8 qconfig."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():  # FX graph mode is deprecated for torchao's pt2e; it still runs int8 kernels
        warnings.simplefilter("ignore")
        prepared = prepare_fx(cnn.eval(), get_default_qconfig_mapping("x86"), example_inputs=(calib[0],))
        with torch.no_grad():
            for x in calib:
                prepared(x)
        return convert_fx(prepared)


def _no_grad(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _build(name, batch):
    spec = model_spec(name)
    chw = spec.input_size
    torch.manual_seed(0)
    cnn = get_model(name, kind="conv", num_classes=spec.num_classes, in_channels=chw[0]).eval()
    adder = get_model(name, kind="adder", num_classes=spec.num_classes, in_channels=chw[0]).eval()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(batch, *chw, generator=g) for _ in range(2)]
    x = torch.randn(batch, *chw, generator=g)
    return {"torch_int8_cnn": _no_grad(torch_int8_cnn(cnn, calib), x),
            "adder_int8": _no_grad(int8_model(adder, chw, batch).eval(), x), "cnn_f32": _no_grad(cnn, x)}


def test_int8(int8_case, bench_setup, compare):
    why = int8_unavailable_reason(bench_setup.device)
    if why is None and "x86" not in torch.backends.quantized.supported_engines:
        why = "this torch has no x86 quantized engine"
    if why:
        pytest.skip(why)
    name, batch, cand = int8_case
    compare(f"int8 inference {name}, batch {batch}", lambda: _build(name, batch), "torch_int8_cnn", cand,
            model=name, batch=batch, input_shape=list(model_spec(name).input_size),
            int8_path="addernet.quantize (uint8 adder layers)", torch_int8="FX graph mode, x86 engine")
