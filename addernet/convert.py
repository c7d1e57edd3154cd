"""Turn a CNN into its AdderNet twin (``convert``) and count layers by kind (``count_layers``)."""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Callable, Iterable, Union

import torch
from torch import nn

from .backends.grad2 import check_grad_mode
from .models.batchnorm import ADDER_BN_MOMENTUM, check_bn_momentum, set_bn_momentum
from .nn import AdderConv2d, AdderLinear

__all__ = ["convert", "count_layers", "LayerCount"]

Selector = Union[Iterable[str], Callable[[str, nn.Module], bool], None]

# Layers that can be the network's first or last one. AdderConv2d is among them so that converting
# an already (partly) converted model keeps the same endpoints instead of moving them inwards.
_WEIGHT_LAYERS = (nn.Conv2d, nn.Linear, AdderConv2d, AdderLinear)


def convert(
    model: nn.Module,
    keep_first: bool = True,
    keep_last: bool = True,
    eta: float | None = 0.2,
    include: Selector = None,
    exclude: Selector = None,
    inplace: bool = False,
    copy_weights: bool = False,
    grad_mode: str = "paper",
    bn_centered: bool = True,
    linear: bool = False,
    bn_momentum: float | None = ADDER_BN_MOMENTUM,
) -> nn.Module:
    """Replace each ``nn.Conv2d`` of ``model`` by an ``AdderConv2d`` with the same hyper-parameters
    (and, with ``linear=True``, each ``nn.Linear`` by an ``AdderLinear``).

    Returns a deep copy of ``model`` unless ``inplace=True`` (then ``model`` itself is changed and
    returned). Kept: in/out channels, kernel size, stride, padding (ints, 'same', 'valid'),
    dilation, groups, whether there is a bias, padding_mode, device, dtype, train/eval mode and
    ``requires_grad``. Hooks registered on a replaced conv are not carried over.

    Endpoints: as in the AdderNet paper, the first and the last weight layer stay multiplicative
    (``keep_first``/``keep_last``). They are found in ``model.named_modules()`` order among
    ``nn.Conv2d``, ``nn.Linear`` (and the adder layers, so converting twice is stable). Linear layers
    are converted only when ``linear=True`` (the paper keeps its classifier multiplicative).

    Selection: ``include`` (convert only these) and ``exclude`` (never convert these) take either
    an iterable of qualified module names as in ``named_modules()``, where a name matches itself
    and everything under it ('layer1' covers 'layer1.0.conv1' but not 'layer10'), or a predicate
    ``(name, module) -> bool`` called on each candidate conv. A name that matches no module is an
    error (a typo would otherwise select nothing). ``keep_first``/``keep_last`` apply on top.

    Weights: the adder layers are freshly initialised (N(0, 1), see ``AdderConv2d``), because an
    L1-distance filter has nothing in common with a correlation filter. ``copy_weights=True``
    copies the conv's weight and bias anyway (for experiments that start from them).
    ``grad_mode`` ("paper" or "exact") is given to every new adder convolution, see ``AdderConv2d``;
    ``AdderLinear`` has the paper's gradients only, so ``linear=True`` asks for ``grad_mode="paper"``.

    A module registered under several names (shared) is replaced everywhere by one adder layer.

    BatchNorm: each new adder layer whose output feeds a ``BatchNorm2d`` and nothing else is made
    ``bn_centered`` (unless ``bn_centered=False``), so that the BatchNorm's running statistics hold
    in eval mode at any point of training (see ``AdderConv2d``). What follows each conv is read
    from a torch.fx trace of the model; a model fx cannot trace is read in registration order (the
    module registered right after the conv, if it is a BatchNorm2d of as many channels). An adder
    layer with no BatchNorm after it gets a warning: its output sits near -sum |w| and moves as the
    weights train, and nothing downstream can follow it in eval mode.

    ``bn_momentum`` (default ``ADDER_BN_MOMENTUM``, 0.5): once at least one layer was converted,
    every BatchNorm of the model that tracks running statistics gets this momentum, because their
    statistics now move with the adder weights (issue 22, docs/training.md). None leaves each
    BatchNorm's own. Like centring, it changes the running statistics only, never training.
    """
    check_grad_mode(grad_mode)
    if bn_momentum is not None:
        check_bn_momentum(bn_momentum)
    if linear and grad_mode != "paper":
        raise ValueError(f"convert(linear=True): AdderLinear has the paper's gradients only, got grad_mode={grad_mode!r}")
    convertible = (nn.Conv2d, nn.Linear) if linear else nn.Conv2d
    if not inplace:
        model = copy.deepcopy(model)
    named = list(model.named_modules())
    inc = _selector(include, "include", named)
    exc = _selector(exclude, "exclude", named)

    endpoints = [name for name, m in named if isinstance(m, _WEIGHT_LAYERS)]
    kept = set()
    if endpoints and keep_first:
        kept.add(endpoints[0])
    if endpoints and keep_last:
        kept.add(endpoints[-1])

    replacement: dict[int, nn.Module] = {}
    for name, m in named:
        if not isinstance(m, convertible) or name in kept:
            continue
        if inc is not None and not inc(name, m):
            continue
        if exc is not None and exc(name, m):
            continue
        replacement[id(m)] = _adder_like(m, name, eta, copy_weights, grad_mode)

    if id(model) in replacement:  # the model is itself a single conv
        return replacement[id(model)]
    # BatchNorm centring concerns the adder convolutions; an AdderLinear has no BatchNorm2d to feed.
    convs = {k: v for k, v in replacement.items() if isinstance(v, AdderConv2d)}
    _center_before_bn(model, named, convs, bn_centered)
    if bn_momentum is not None and replacement:
        set_bn_momentum(model, bn_momentum)
    # Walk every parent's children (not named_modules, which lists a shared module once) so that
    # all the places a shared conv is registered get the same new layer.
    for parent in model.modules():
        for key, child in list(parent._modules.items()):
            if child is not None and id(child) in replacement:
                parent._modules[key] = replacement[id(child)]
    return model


def _adder_like(conv: nn.Conv2d | nn.Linear, name: str, eta, copy_weights: bool, grad_mode: str) -> nn.Module:
    if isinstance(conv.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"cannot convert lazy layer {name!r} before its shapes are known: run one forward pass first"
        )
    w = conv.weight
    if isinstance(conv, nn.Linear):
        new = AdderLinear(conv.in_features, conv.out_features, bias=conv.bias is not None, device=w.device,
                          dtype=w.dtype, eta=eta)
    else:
        new = AdderConv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
            dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
            padding_mode=conv.padding_mode, device=w.device, dtype=w.dtype, eta=eta,
            grad_mode=grad_mode,
        )
    if copy_weights:
        with torch.no_grad():
            new.weight.copy_(w)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
    new.weight.requires_grad_(w.requires_grad)
    if conv.bias is not None:
        new.bias.requires_grad_(conv.bias.requires_grad)
    new.train(conv.training)
    return new


def _center_before_bn(model: nn.Module, named, replacement: dict[int, nn.Module], enable: bool) -> None:
    """Sets ``bn_centered`` on the new adder layers a BatchNorm follows; warns about the others.
    Runs on the model before the swap (fx traces nn.Conv2d as a leaf, not the new layers)."""
    names = [n for n, m in named if id(m) in replacement]
    if not names:
        return
    followed = _followed_by_bn(model, set(names))
    for name in names:
        if name in followed:
            replacement[id(dict(named)[name])].bn_centered = enable
    lonely = [n for n in names if n not in followed]
    if lonely:
        warnings.warn(
            f"convert: adder layer(s) {', '.join(map(repr, lonely))} feed no BatchNorm2d of their own. An adder "
            "layer's output sits near -sum|w| per filter and moves as the weights train, so running statistics "
            "downstream lag it and eval-mode outputs can be wrong mid-training: put a BatchNorm2d right after "
            "each adder layer, or call addernet.models.recalibrate_bn before evaluating.", stacklevel=3)


def _followed_by_bn(model: nn.Module, convs: set[str]) -> set[str]:
    """The names in ``convs`` whose output only a BatchNorm2d (called once) consumes."""
    import torch.fx

    modules = dict(model.named_modules())
    try:
        graph = torch.fx.Tracer().trace(model)
    except Exception:  # data-dependent Python: fall back to registration order
        graph = None
    if graph is not None:
        calls: dict[str, int] = {}
        for node in graph.nodes:
            if node.op == "call_module":
                calls[node.target] = calls.get(node.target, 0) + 1
        out = set()
        for node in graph.nodes:
            if node.op != "call_module" or node.target not in convs or calls[node.target] != 1:
                continue
            users = list(node.users)
            if (len(users) == 1 and users[0].op == "call_module" and calls[users[0].target] == 1
                    and isinstance(modules[users[0].target], nn.BatchNorm2d)):
                out.add(node.target)
        return out
    out = set()
    for parent_name, parent in model.named_modules():
        children = list(parent._modules.items())
        for (key, child), (_, nxt) in zip(children, children[1:]):
            name = f"{parent_name}.{key}" if parent_name else key
            if (name in convs and isinstance(nxt, nn.BatchNorm2d)
                    and nxt.num_features == child.out_channels):
                out.add(name)
    return out


def _selector(sel: Selector, what: str, named) -> Callable[[str, nn.Module], bool] | None:
    if sel is None or callable(sel):
        return sel
    names = (sel,) if isinstance(sel, str) else tuple(sel)  # a bare str is one name, not characters
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"{what} must hold module names (str) or be a predicate, got {n!r}")
    all_names = [n for n, _ in named]
    unknown = sorted(n for n in set(names) if not any(_covers(n, m) for m in all_names))
    if unknown:
        raise ValueError(f"{what} names not found in the model: {', '.join(map(repr, unknown))}")
    return lambda name, _m: any(_covers(n, name) for n in names)


def _covers(prefix: str, name: str) -> bool:
    return prefix == "" or name == prefix or name.startswith(prefix + ".")


@dataclass
class LayerCount:
    """How many adder, conv (``nn.Conv2d``) and linear layers a model holds, with their names.

    ``counts['adder']`` and ``counts.adder`` both work; ``as_dict()`` gives the three numbers.
    """

    names: dict[str, list[str]] = field(default_factory=lambda: {"adder": [], "conv": [], "linear": []})

    @property
    def adder(self) -> int:
        return len(self.names["adder"])

    @property
    def conv(self) -> int:
        return len(self.names["conv"])

    @property
    def linear(self) -> int:
        return len(self.names["linear"])

    def __getitem__(self, kind: str) -> int:
        return len(self.names[kind])

    def as_dict(self) -> dict[str, int]:
        return {kind: len(v) for kind, v in self.names.items()}

    def __str__(self) -> str:
        lines = [", ".join(f"{n} {kind}" for kind, n in self.as_dict().items())]
        for kind, v in self.names.items():
            if v:
                lines.append(f"  {kind}: {', '.join(v)}")
        return "\n".join(lines)


def count_layers(model: nn.Module) -> LayerCount:
    """Count adder layers (``AdderConv2d``, ``AdderLinear``), ``nn.Conv2d`` and ``nn.Linear`` modules
    (a shared one counts once)."""
    names: dict[str, list[str]] = {"adder": [], "conv": [], "linear": []}
    for name, m in model.named_modules():
        if isinstance(m, (AdderConv2d, AdderLinear)):
            names["adder"].append(name)
        elif isinstance(m, nn.Conv2d):
            names["conv"].append(name)
        elif isinstance(m, nn.Linear):
            names["linear"].append(name)
    return LayerCount(names)
