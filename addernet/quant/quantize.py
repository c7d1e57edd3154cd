"""``addernet.quantize``: post-training int8 quantisation of a model's adder layers.

The BatchNorm (and ReLU) after each adder layer is folded first, by ``addernet.fuse``; its data
flow (the same graph walk) then says which quantised layer feeds exactly one other, so that the
first can requantise its output to the second's uint8 grid and the pair stays integer between
them. Calibration batches give each layer's input range, outliers clamped at a percentile.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..fuse import FusedAdderConv2d, data_flow, fuse
from ..functional_u8 import check_finite
from ..nn import AdderConv2d, QuantAdderConv2d
from .calibration import calibration_batches, checked, inputs

__all__ = ["quantize"]

_COMPUTE = (nn.Conv2d, nn.Linear, AdderConv2d, FusedAdderConv2d)
# Values per batch kept for the percentiles: enough for 99.99 to be more than a maximum.
_SAMPLES = 1 << 17


def _calibrate(model, loader, batches, device, progress):
    """Runs up to ``batches`` batches; returns ({adder layer: sampled inputs}, compute layers in call order)."""
    samples: dict[str, list[torch.Tensor]] = {}
    order: list[str] = []
    gen = torch.Generator().manual_seed(0)
    handles = []
    for name, m in model.named_modules():
        if not isinstance(m, _COMPUTE):
            continue

        def hook(module, args, name=name):
            if name not in order:
                order.append(name)
            if isinstance(module, (AdderConv2d, FusedAdderConv2d)):
                check_finite(args[0], f"quantize(): calibration: the input of layer {name!r}")
                flat = args[0].detach().flatten().float().cpu()
                if flat.numel() > _SAMPLES:
                    flat = flat[torch.randint(flat.numel(), (_SAMPLES,), generator=gen)]
                samples.setdefault(name, []).append(flat)

        handles.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for x in calibration_batches(loader, batches, progress):
                model(x.to(device))
    finally:
        for h in handles:
            h.remove()
    return {k: torch.cat(v) for k, v in samples.items()}, order


def _range(x: torch.Tensor, percentile: float) -> tuple[float, float]:
    q = torch.tensor([1.0 - percentile / 100.0, percentile / 100.0])
    lo, hi = torch.quantile(x, q).tolist()
    return lo, hi


def quantize(model: nn.Module, calib_loader, *, mode: str = "pt2e", batches: int = 8, example_input=None,
             percentile: float = 99.99, filter_groups: int = 1, weight_clamp: bool = True, requantize: bool = True,
             keep_first_last: bool = True, progress: bool = False) -> nn.Module:
    """A copy of ``model`` for inference in 8-bit integers.

    ``mode="pt2e"`` (the default): the whole graph, on torchao's PT2E flow (``addernet.quant.pt2e``):
    every adder layer runs the uint8 kernels, everything else torch's int8 ops; compile the result
    with ``addernet.quant.compile_frozen`` (``torch.compile`` with Inductor's freezing) for torch's
    int8 kernels. Needs torchao (the ``int8`` extra). Of the options below only ``batches``,
    ``example_input`` (the export's example, default the first calibration batch) and ``progress``
    apply to it; it quantises every adder layer on one grid per layer, the weights clamped into it.

    ``mode="adder"``: only the adder layers, in place in the model (the rest stays float):

    - Each adder layer, with the BatchNorm and ReLU that follow it folded (``addernet.fuse``),
      becomes a ``QuantAdderConv2d``: input and weights on one uint8 grid per layer (scale and
      zero point), so |x - w| = s*|qx - qw| exactly, the sum of absolute byte differences in 32
      bits, and a float epilogue (scale, shift, ReLU).
    - ``calib_loader`` yields batches (tensors or (inputs, ...) tuples); the first ``batches`` set
      each layer's input range, clamped at ``percentile`` (and 100 - percentile) of its values.
    - ``filter_groups`` > 1: groups of filters with a grid each (Nie et al., NeurIPS 2022).
      ``weight_clamp``: their lossless clamp of weights into the input range (see QuantAdderConv2d).
    - ``requantize``: a quantised layer whose output feeds only another quantised layer (with one
      grid) writes uint8 on that layer's grid, so that consecutive adder layers stay integer.
    - ``keep_first_last``: the first and last compute layers stay as they are when they are adder
      layers, as in the paper.

    The model is copied and put in eval mode; the one passed in is left alone. Nothing is trained.
    ``model.quantized_layers`` lists the layers that were quantised.
    """
    if mode not in ("pt2e", "adder"):
        raise ValueError(f"quantize(): mode must be 'pt2e' or 'adder', got {mode!r}")
    if not 50.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (50, 100], got {percentile}")
    model = copy.deepcopy(model).eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        example = checked(inputs(next(iter(calib_loader))), 0).to(device) if example_input is None else example_input
    except StopIteration:
        raise ValueError("quantize(): calib_loader gave no batches to calibrate on") from None
    model = fuse(model, example_input=example, inplace=True)
    if mode == "pt2e":
        from .pt2e import pt2e_available, quantize_pt2e

        reason = pt2e_available()
        if reason is not None:
            raise RuntimeError(f"quantize(mode='pt2e'): {reason}; or use mode='adder'")
        return quantize_pt2e(model, calib_loader, batches=batches, example=example, progress=progress)
    samples, order = _calibrate(model, calib_loader, batches, device, progress)
    skip = set()
    if keep_first_last and order:
        skip = {n for n in (order[0], order[-1]) if isinstance(model.get_submodule(n), (AdderConv2d, FusedAdderConv2d))}
    layers: dict[str, QuantAdderConv2d] = {}
    for name, m in list(model.named_modules()):
        if not isinstance(m, (AdderConv2d, FusedAdderConv2d)) or name in skip or name not in samples:
            continue
        if m.padding_mode != "zeros":
            raise ValueError(f"quantize(): layer {name!r} pads with {m.padding_mode!r}; only zero padding is supported")
        if isinstance(m, FusedAdderConv2d):
            scale, shift, relu = m.scale, m.shift, m.relu
        else:
            scale = torch.ones(m.out_channels, device=m.weight.device)
            shift = m.bias.detach() if m.bias is not None else torch.zeros(m.out_channels, device=m.weight.device)
            offset = m.centering_offset()
            if offset is not None:
                shift = shift + offset
            relu = False
        q = QuantAdderConv2d(m.weight, scale, shift, relu, m.stride, m.padding, m.dilation, m.groups,
                             _range(samples[name], percentile),
                             filter_groups=filter_groups if m.groups == 1 else 1, weight_clamp=weight_clamp)
        model.set_submodule(name, q)
        layers[name] = q
    if requantize and layers:
        flow = data_flow(model, example)
        for name, q in layers.items():
            if flow.calls.get(name) != 1:
                continue
            users = flow.consumers.get(name, [])
            # fuse() leaves an nn.Identity where each folded BatchNorm and ReLU was: look past them.
            while (len(users) == 1 and users[0][0] == "module" and flow.calls.get(users[0][1]) == 1
                   and isinstance(model.get_submodule(users[0][1]), nn.Identity)):
                users = flow.consumers.get(users[0][1], [])
            if len(users) != 1 or users[0][0] != "module":
                continue
            nxt = layers.get(users[0][1])
            if nxt is None or flow.calls.get(users[0][1]) != 1 or len(nxt.qparams) != 1:
                continue
            q.out_qparams = nxt.qparams[0]
            nxt.uint8_input = True
    model.quantized_layers = list(layers)
    return model
