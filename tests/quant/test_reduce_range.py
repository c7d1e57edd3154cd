"""On a CPU without VNNI, torch's int8 convs get 7-bit activations (reduce_range) and the adder
ops keep 8 bits: oneDNN's u8 x s8 kernels there add pairs of products in int16 and saturate on
full-range bytes (the compiled model disagreed with its own graph by up to 0.6 in the logits on
an AVX2-only AMD EPYC), while the adder kernels sum |qx - qw| exactly."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchao")

from addernet.quant import pt2e  # noqa: E402


@pytest.mark.parametrize("vnni, conv_max", [(True, 255), (False, 127)])
def test_torchs_convs_reduce_the_range_only_without_vnni(monkeypatch, vnni, conv_max):
    monkeypatch.setattr(pt2e, "cpu_has_vnni", lambda: vnni)
    assert pt2e.x86_quantization_config().input_activation.quant_max == conv_max
    assert pt2e.x86_quantization_config(reduce_range=True).input_activation.quant_max == 127
    q = pt2e.AdderX86InductorQuantizer()
    assert q.act.quant_max == 255  # the adder ops' activations: full range either way
    assert q.x86.global_config.input_activation.quant_max == conv_max


def test_the_input_guard_keeps_the_graphs_range_and_refuses_nan():
    x = torch.tensor([0.0, 1.0, 100.0])
    out = torch.ops.addernet.quantize_input_u8(x, 0.5, 0, 0, 127)
    assert out.tolist() == [0, 2, 127]  # clamped at the graph's 127, not 255
    assert torch.ops.addernet.quantize_input_u8(x, 0.5, 0).tolist() == [0, 2, 200]
    with pytest.raises(ValueError, match="NaN or inf"):
        torch.ops.addernet.quantize_input_u8(torch.tensor([float("nan")]), 0.5, 0, 0, 127)
