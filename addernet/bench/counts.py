"""Operation counts per layer and per model: multiplications, additions, absolute values, comparisons.

    from addernet.bench.counts import count_ops
    c = count_ops(model, (1, 3, 32, 32))      # or an example tensor; fold_bn=True folds BatchNorm
    c.totals()["mults"], c.layers, c.uncounted

The model runs once on the meta device (no memory, no arithmetic), and forward hooks on its leaf
modules count each call from the module's settings and the shapes it saw. ``CONVENTION`` is the
counting rule; print it with every table built from these numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._python_dispatch import TorchDispatchMode

from ..fuse import FusedAdderConv2d
from ..nn import AdderConv2d, AdderLinear
from ..nn import QuantAdderConv2d

CONVENTION = """\
Counting convention (per input image, inference):
- conv / linear: a multiply-accumulate = 1 mult + 1 add.
- adder layer: a tap |x - w| = 1 add (the subtraction) + 1 abs + 1 add (the accumulation).
- bias: 1 add per output element.
- BatchNorm (inference): 1 mult + 1 add per element (scale and shift). With fold_bn=True a BatchNorm
  right after a conv/linear folds into its weights and bias: nothing left but the bias add (none if
  the layer already had a bias). After an adder layer it can only fold into the epilogue, 1 mult +
  1 add per output: the scale cannot enter |x - w|, so the multiplication stays (unless the
  per-channel scale is quantized to a power of two, which is not assumed here).
- ReLU: 1 comparison per element. max-pool: k*k-1 comparisons per output. avg-pool: k*k-1 adds
  + 1 mult per output (adaptive pools: the exact windows).
- Element-wise arithmetic outside leaf modules (residual x + identity) is counted from the ops
  themselves; anything else not covered is listed as uncounted, never silently dropped.
- 'adds' include the accumulations, counted also in 'acc_adds' (energy tables may price them apart).
- int8 adder layer (addernet.quantize): a tap |qx - qw| = 1 8-bit add (the subtraction) + 1 abs +
  1 accumulation (32-bit), type 'adder_int8'. Its epilogue, in float32, is a row of its own
  ('int8_epilogue'): scale and shift 1 mult + 1 add per output, ReLU 1 comparison, requantising
  1 mult + 1 add + 2 comparisons (the clamp) per output; quantising a float input 1 mult + 1 add
  + 2 comparisons per input element and filter group.
- fused adder layer (addernet.fuse, and the float first/last layers of a quantized model): the
  adder taps, plus its folded BatchNorm as the epilogue's 1 mult + 1 add per output (the layer's
  bias is inside that shift) and the folded ReLU's 1 comparison per output; type 'adder'."""

# Leaf modules with no arithmetic.
_FREE = (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout2d)
# aten ops outside leaf modules that move data without arithmetic.
_FREE_ATEN = {"view", "_unsafe_view", "reshape", "flatten", "t", "transpose", "permute", "expand", "squeeze",
              "unsqueeze", "clone", "contiguous", "detach", "alias", "empty", "empty_like", "zeros", "zeros_like",
              "ones", "ones_like", "cat", "stack", "copy_", "slice", "select", "split", "chunk", "as_strided",
              "lift_fresh", "_to_copy", "to", "new_empty", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset",
              "is_same_size", "_reshape_alias", "split_with_sizes", "unbind", "narrow"}
# aten element-wise ops outside leaf modules: (mults, adds, cmps) per output element.
_ELEMENTWISE = {"add": (0, 1, 0), "add_": (0, 1, 0), "sub": (0, 1, 0), "sub_": (0, 1, 0), "mul": (1, 0, 0),
                "mul_": (1, 0, 0), "div": (1, 0, 0), "div_": (1, 0, 0), "relu": (0, 0, 1), "relu_": (0, 0, 1),
                "neg": (0, 0, 0), "neg_": (0, 0, 0)}


@dataclass
class LayerOps:
    name: str          # module path; a module called twice gets '#2', '#3'
    type: str          # conv, adder, linear, bn, relu, maxpool, avgpool, functional
    in_shape: tuple
    out_shape: tuple
    mults: int = 0
    adds: int = 0
    abs: int = 0
    cmps: int = 0
    acc_adds: int = 0  # the part of adds that accumulates products/distances
    taps: int = 0      # multiply-accumulates (conv/linear) or |x - w| terms (adder)
    note: str = ""

    @property
    def is_weight_layer(self) -> bool:
        return self.type in ("conv", "adder", "adder_int8", "linear")


@dataclass
class ModelCounts:
    input_shape: tuple
    fold_bn: bool
    layers: list[LayerOps] = field(default_factory=list)
    uncounted: list[str] = field(default_factory=list)  # module types / aten ops seen but not counted

    def totals(self, types=None) -> dict[str, int]:
        keys = ("mults", "adds", "abs", "cmps", "acc_adds", "taps")
        rows = [r for r in self.layers if types is None or r.type in types]
        return {k: sum(getattr(r, k) for r in rows) for k in keys}

    def weight_layers(self) -> list[LayerOps]:
        return [r for r in self.layers if r.is_weight_layer]

    def to_dict(self) -> dict:
        return {"input_shape": list(self.input_shape), "fold_bn": self.fold_bn, "totals": self.totals(),
                "uncounted": self.uncounted, "layers": [asdict(r) for r in self.layers]}


def _conv_like(m, x, y, adder: bool) -> dict:
    out = y.numel()
    # An adder linear layer is a 1x1 adder convolution of in_features channels.
    fan_in = m.in_features if isinstance(m, AdderLinear) else (m.in_channels // m.groups) * math.prod(m.kernel_size)
    taps = out * fan_in
    bias = out if m.bias is not None else 0
    if adder:
        return dict(adds=2 * taps + bias, abs=taps, acc_adds=taps, taps=taps)
    return dict(mults=taps, adds=taps + bias, acc_adds=taps, taps=taps)


def _int8_adder(m, x, y) -> tuple[dict, dict]:
    """(the integer taps, the float32 epilogue) of a QuantAdderConv2d call."""
    out = y.numel()
    taps = out * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    epi = dict(mults=out, adds=out, cmps=out if m.relu else 0)
    if m.out_qparams is not None:
        epi = dict(mults=epi["mults"] + out, adds=epi["adds"] + out, cmps=epi["cmps"] + 2 * out)
    if not m.uint8_input:
        n = x.numel() * len(m.qparams)
        epi = dict(mults=epi["mults"] + n, adds=epi["adds"] + n, cmps=epi["cmps"] + 2 * n)
    return dict(adds=2 * taps, abs=taps, acc_adds=taps, taps=taps), epi


def _fused_adder(m, x, y) -> dict:
    """A FusedAdderConv2d call: the taps, then scale and shift (and ReLU) per output."""
    out = y.numel()
    taps = out * (m.in_channels // m.groups) * math.prod(m.kernel_size)
    return dict(mults=out, adds=2 * taps + out, abs=taps, acc_adds=taps, taps=taps, cmps=out if m.relu else 0)


def _linear(m, x, y) -> dict:
    taps = y.numel() * m.in_features
    return dict(mults=taps, adds=taps + (y.numel() if m.bias is not None else 0), acc_adds=taps, taps=taps)


def _window_sum(size: int, out: int) -> int:
    """Total window length over an adaptive pool's outputs along one dim (windows may overlap)."""
    return sum(-(-(i + 1) * size // out) - (i * size // out) for i in range(out))


def _pool(m, x, y, kind: str) -> dict:
    outs = y.numel()
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        (h, w), (oh, ow) = x.shape[-2:], y.shape[-2:]
        taps = outs // (oh * ow) * _window_sum(h, oh) * _window_sum(w, ow)
    else:
        k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
        taps = outs * math.prod(k)
    if kind == "maxpool":
        return dict(cmps=taps - outs)
    return dict(adds=taps - outs, acc_adds=taps - outs, mults=outs)


_TYPES = (
    ((AdderConv2d, AdderLinear), "adder"), (FusedAdderConv2d, "adder_fused"), (QuantAdderConv2d, "adder_int8"), (nn.Conv2d, "conv"), (nn.Conv1d, "conv"), (nn.Linear, "linear"),
    ((nn.BatchNorm1d, nn.BatchNorm2d), "bn"), (nn.ReLU, "relu"),
    ((nn.MaxPool2d, nn.AdaptiveMaxPool2d), "maxpool"), ((nn.AvgPool2d, nn.AdaptiveAvgPool2d), "avgpool"),
)


def _type_of(m: nn.Module) -> str | None:
    for cls, name in _TYPES:
        if isinstance(m, cls):
            return name
    return None


class _Functional(TorchDispatchMode):
    """Counts element-wise arithmetic that runs outside every leaf module (residual adds)."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.counter.depth == 0:
            self.counter.functional(func, out)
        return out


class _Counter:
    def __init__(self, fold_bn: bool):
        self.fold_bn = fold_bn
        self.depth = 0
        self.calls: dict[str, int] = {}
        self.layers: list[LayerOps] = []
        self.uncounted: set[str] = set()
        self.producers: dict[int, tuple[torch.Tensor, nn.Module, str]] = {}  # id(output) -> (output, layer, type)
        self.func_rows: dict[str, LayerOps] = {}

    def pre(self, m, inputs):
        self.depth += 1

    def post(self, name: str, m: nn.Module, inputs, y) -> None:
        self.depth -= 1
        x = inputs[0] if inputs else None
        if not isinstance(y, torch.Tensor) or not isinstance(x, torch.Tensor):
            self.uncounted.add(type(m).__name__)
            return
        t = _type_of(m)
        n = self.calls[name] = self.calls.get(name, 0) + 1
        label = name if n == 1 else f"{name}#{n}"
        note = ""
        if t == "adder_int8":
            ops, epi = _int8_adder(m, x, y)
            self.layers.append(LayerOps(f"{label}:epilogue", "int8_epilogue", tuple(x.shape), tuple(y.shape), **epi))
        elif t == "adder_fused":
            t, ops, note = "adder", _fused_adder(m, x, y), "BatchNorm folded into the epilogue" + (", ReLU" if m.relu else "")
        elif t in ("adder", "conv"):
            ops = _conv_like(m, x, y, adder=t == "adder")
        elif t == "linear":
            ops = _linear(m, x, y)
        elif t == "bn":
            ops, note = self._bn(x, y)
        elif t == "relu":
            ops = dict(cmps=y.numel())
        elif t in ("maxpool", "avgpool"):
            ops = _pool(m, x, y, t)
        elif isinstance(m, _FREE):
            return
        else:
            self.uncounted.add(type(m).__name__)
            return
        if t in ("adder", "conv", "linear"):
            self.producers[id(y)] = (y, m, t)  # the tensor is kept so its id stays unique
        self.layers.append(LayerOps(label, t, tuple(x.shape), tuple(y.shape), note=note, **ops))

    def _bn(self, x, y) -> tuple[dict, str]:
        out = y.numel()
        prod = self.producers.get(id(x))
        if not self.fold_bn or prod is None or prod[0] is not x:
            return dict(mults=out, adds=out), ""
        _, layer, t = prod
        has_bias = getattr(layer, "bias", None) is not None
        if t == "adder":
            # The shift merges into an existing bias add; the scale stays a multiplication.
            return dict(mults=out, adds=0 if has_bias else out), "folded into the adder epilogue"
        return dict(adds=0 if has_bias else out), f"folded into the {t}"

    def functional(self, func, out) -> None:
        name = func._overloadpacket.__name__ if hasattr(func, "_overloadpacket") else str(func)
        if name in _FREE_ATEN:
            return
        if name not in _ELEMENTWISE or not isinstance(out, torch.Tensor):
            self.uncounted.add(f"aten.{name}")
            return
        mults, adds, cmps = (c * out.numel() for c in _ELEMENTWISE[name])
        row = self.func_rows.get(name)
        if row is None:
            row = self.func_rows[name] = LayerOps(f"<{name}>", "functional", (), tuple(out.shape))
        row.mults += mults
        row.adds += adds
        row.cmps += cmps


def _meta(t: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(t, device="meta")


def count_ops(model: nn.Module, input, fold_bn: bool = False) -> ModelCounts:
    """Counts one eval-mode forward of ``model`` on ``input`` (a shape or an example tensor).

    The model is not changed: it runs with meta copies of its parameters, in eval mode, and its
    training flag is restored. Counts are for the whole input; pass batch 1 for per-image counts.
    """
    shape = tuple(input.shape) if isinstance(input, torch.Tensor) else tuple(input)
    state = {k: _meta(v) for k, v in list(model.named_parameters()) + list(model.named_buffers())}
    try:
        counter = _count(model, fold_bn, lambda: functional_call(model, state, (torch.empty(shape, device="meta"),)))
    except (NotImplementedError, RuntimeError):
        # Data-dependent code (.item(), a kernel without a meta version) cannot run on meta: pay for one real run.
        device = next(model.parameters(), torch.empty(0)).device
        counter = _count(model, fold_bn, lambda: model(torch.zeros(shape, device=device)))
    layers = counter.layers + list(counter.func_rows.values())
    return ModelCounts(shape, fold_bn, layers, sorted(counter.uncounted))


def _count(model: nn.Module, fold_bn: bool, run) -> _Counter:
    counter = _Counter(fold_bn)
    handles = []
    for name, m in model.named_modules():
        if next(m.children(), None) is None:  # leaf modules only; containers just route tensors
            handles.append(m.register_forward_pre_hook(counter.pre))
            handles.append(m.register_forward_hook(lambda mod, i, o, name=name: counter.post(name or "<root>", mod, i, o)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Functional(counter):
            run()
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counter
