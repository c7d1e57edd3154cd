"""Inference fast path: fold each BatchNorm (and ReLU) that follows an adder layer into its kernel.

In eval mode a BatchNorm is a per-channel scale and shift, so AdderConv2d -> BatchNorm2d -> ReLU
becomes one pass of the native kernel with an epilogue, y = relu(scale * adder(x) + shift), instead
of three passes over the output.

"Follows" is decided from the data flow, not from the order modules were registered in: the adder
layer's output must feed the BatchNorm and nothing else, and likewise the BatchNorm's output and
the ReLU. The data flow comes from torch.fx when the model traces symbolically, else from running
``example_input`` through it once (models with shape-dependent Python, like the CIFAR ResNets).
"""
from __future__ import annotations

import copy
from collections import defaultdict

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .nn import AdderConv2d, FusedAdderConv2d

# FusedAdderConv2d lives with the other layer variants in addernet.nn; it is re-exported here.
__all__ = ["DataFlow", "FusedAdderConv2d", "data_flow", "fuse"]


# ------------------------------------------------------------------------------ data flow

class DataFlow:
    """Who consumes what each module produced: consumers[name] lists ('module', name) / ('op', name);
    calls[name] counts the module's calls. ``fuse`` and ``quantize`` decide what follows what from it."""

    def __init__(self):
        self.consumers: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self.calls: dict[str, int] = defaultdict(int)


def _flow_from_fx(model: nn.Module) -> DataFlow:
    import torch.fx

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m, qualname):
            return isinstance(m, AdderConv2d) or super().is_leaf_module(m, qualname)

    graph = Tracer().trace(model)
    flow = DataFlow()
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        flow.calls[node.target] += 1
        for user in node.users:
            kind = "module" if user.op == "call_module" else "op"
            flow.consumers[node.target].append((kind, str(user.target)))
    return flow


# Reading a tensor's metadata does not consume its values.
_NOT_CONSUMING = {"size", "dim", "numel", "__len__", "is_contiguous", "__get__", "__format__", "__bool__"}


def data_flow(model: nn.Module, example_input) -> DataFlow:
    """Runs the model once, recording which module or op reads each module's output.

    Tensors are keyed by (id, version), so an in-place ReLU's output is not mistaken for its input;
    every tensor is kept alive during the run so that ids are not reused.
    """
    flow = DataFlow()
    producer: dict[tuple[int, int], str] = {}
    alive: list[torch.Tensor] = []
    active: list[str] = []
    names = {m: n for n, m in model.named_modules() if not list(m.children())}

    def tensors(obj):
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                yield from tensors(o)
        elif isinstance(obj, dict):
            for o in obj.values():
                yield from tensors(o)

    def consume(obj, consumer):
        for t in tensors(obj):
            src = producer.get((id(t), t._version))
            if src is not None:
                flow.consumers[src].append(consumer)

    def pre_hook(module, args):
        name = names[module]
        flow.calls[name] += 1
        consume(args, ("module", name))
        active.append(name)

    def post_hook(module, args, output):
        name = active.pop()
        for t in tensors(output):
            alive.append(t)
            producer[(id(t), t._version)] = name

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            fname = getattr(func, "__name__", str(func))
            if not active and fname not in _NOT_CONSUMING:
                consume((args, kwargs), ("op", fname))
            return func(*args, **kwargs)

    handles = [m.register_forward_pre_hook(pre_hook) for m in names] + [
        m.register_forward_hook(post_hook) for m in names]
    try:
        with torch.no_grad(), Mode():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
    return flow


# ------------------------------------------------------------------------------ fusion

def fuse(model: nn.Module, example_input=None, inplace: bool = False) -> nn.Module:
    """Folds every eval-mode BatchNorm2d (and a following nn.ReLU) that only an adder layer feeds.

    Returns a copy unless ``inplace``. The model must be in eval mode. ``example_input`` is needed
    only for models torch.fx cannot trace symbolically. ``model.fused_layers`` lists what was fused.
    """
    if model.training:
        raise ValueError("fuse() folds BatchNorm running statistics, which only eval mode uses: call model.eval() first")
    if example_input is not None:
        flow = data_flow(model, example_input)
    else:
        try:
            flow = _flow_from_fx(model)
        except Exception as exc:  # torch.fx raises many types for data-dependent Python
            raise RuntimeError(
                f"fuse(): torch.fx could not trace {type(model).__name__} ({type(exc).__name__}: {exc}); "
                "pass example_input=<a batch> so the data flow is recorded by running it once") from exc
    if not inplace:
        model = copy.deepcopy(model)
    modules = dict(model.named_modules(remove_duplicate=False))
    counts = defaultdict(int)
    for m in modules.values():
        counts[id(m)] += 1

    def single(name, cls):
        m = modules.get(name)
        ok = isinstance(m, cls) and counts[id(m)] == 1 and flow.calls.get(name) == 1
        return m if ok else None

    fused = []
    for name in list(modules):
        adder = single(name, AdderConv2d)
        if adder is None or flow.consumers.get(name, []) == [] or len(flow.consumers[name]) != 1:
            continue
        kind, bn_name = flow.consumers[name][0]
        bn = single(bn_name, nn.BatchNorm2d) if kind == "module" else None
        if bn is None or not bn.track_running_stats or bn.running_var is None:
            continue
        relu_name = None
        after_bn = flow.consumers.get(bn_name, [])
        if len(after_bn) == 1 and after_bn[0][0] == "module" and single(after_bn[0][1], nn.ReLU) is not None:
            relu_name = after_bn[0][1]
        model.set_submodule(name, FusedAdderConv2d(adder, bn, relu=relu_name is not None))
        model.set_submodule(bn_name, nn.Identity())
        if relu_name is not None:
            model.set_submodule(relu_name, nn.Identity())
        fused.append((name, bn_name, relu_name))
    model.fused_layers = fused
    return model
