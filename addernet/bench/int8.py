"""The int8 column of ``addernet bench``: the AdderNet with its adder layers quantised
(``addernet.quantize``), its counts, energy and inference latency beside the float32 kinds.

Energy prices the integer taps in int8 (a subtraction and an abs at the table's 8-bit add, the
accumulation in int32) and everything else, the epilogues and the layers that stay float, in
float32. Calibration uses random batches: the column is about cost, not accuracy.
"""
from __future__ import annotations

import torch
from torch import nn

from .counts import count_ops
from .energy import EnergyTable


def int8_unavailable_reason(device: str) -> str | None:
    """None when the int8 column can be measured here, else why not."""
    from .. import backends

    if backends.provider("adder_conv2d_u8", None, device) == backends.REFERENCE:
        return f"no backend has fast uint8 adder kernels for {device} (only the reference definition)"
    return None


def int8_model(adder: nn.Module, chw: tuple, batch: int) -> nn.Module:
    from ..quant import quantize

    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(batch, *chw, generator=g) for _ in range(2)]
    # The adder-only mode: its QuantAdderConv2d layers are what count_ops prices.
    return quantize(adder, calib, batches=2, mode="adder")


def int8_counts(q: nn.Module, chw: tuple, table: EnergyTable, fold_bn: bool) -> dict:
    c = count_ops(q, (1, *chw), fold_bn=fold_bn)
    keys = ("mults", "adds", "abs", "cmps", "acc_adds")
    energy = 0.0
    for r in c.layers:
        counts = {k: getattr(r, k) for k in keys}
        energy += table.energy_pj(counts, "int8" if r.type == "adder_int8" else "float32")
    return {"totals": c.totals(), "int8_taps": c.totals(("adder_int8",))["taps"], "energy_uJ": energy / 1e6,
            "energy_pricing": f"integer taps: {table.citation('int8')}; the rest float32",
            "quantized_layers": list(getattr(q, "quantized_layers", [])), "uncounted": c.uncounted}


def int8_table(res: dict) -> str:
    """Lines for the console report."""
    r = res["int8"]
    if "skipped" in r:
        return f"int8 AdderNet: not measured ({r['skipped']})"
    t = r["totals"]
    lines = [f"int8 AdderNet ({len(r['quantized_layers'])} adder layers quantised by addernet.quantize; "
             f"energy with {r['energy_pricing']}):",
             f"  multiplications {t['mults']:,}  additions {t['adds']:,} (of which {r['int8_taps']:,} 8-bit "
             f"subtractions and as many int32 accumulations)  energy {r['energy_uJ']:.4g} µJ"]
    lat = r.get("latency", {})
    if "int8" in lat and "conv" in lat:
        ms, conv = lat["int8"]["median_ms"], lat["conv"]["median_ms"]
        lines.append(f"  inference {ms:.3g} ms at batch {res['batch_size']} ({ms / conv:.2f}x the float32 CNN, "
                     "timed interleaved with it)")
    elif "int8" in lat:
        lines.append(f"  inference {lat['int8']['median_ms']:.3g} ms at batch {res['batch_size']}")
    return "\n".join(lines)


# ------------------------------------------------------------------- torch's int8 CNN, the baseline

def cnn_int8_fx(model: nn.Module, calib, example: torch.Tensor) -> nn.Module:
    """torch's FX graph-mode int8 (x86 engine, default qconfig mapping), calibrated on ``calib``.
    Deprecated in torch 2.13 in favour of PT2E; measured because it is what most users have."""
    import copy
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"), (example,))
        with torch.no_grad():
            for x in calib:
                prepared(x)
        return convert_fx(prepared)


def cnn_int8_pt2e(model: nn.Module, calib, example: torch.Tensor):
    """torch's own PT2E int8 CNN: X86InductorQuantizer, convert_pt2e, compiled with freezing."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

    from ..quant.pt2e import compile_frozen, quantize_pt2e, x86_quantization_config

    quantizer = X86InductorQuantizer().set_global(x86_quantization_config())
    gm = quantize_pt2e(model, calib, batches=len(calib), example=example, quantizer=quantizer, lower=False,
                      guard=False)
    return compile_frozen(gm, example)
