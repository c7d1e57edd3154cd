"""Whole-graph int8 on torchao's PT2E flow (the path torch 2.13 recommends): the adder layers on the
uint8 kernels, everything else (stem conv, residual adds, pooling, classifier) on torch's own int8
kernels after ``torch.compile``.

1. ``addernet.fuse`` folds each adder layer's BatchNorm and ReLU into one ``adder_conv2d_fused`` op
   (conv-BN pairs are folded by ``prepare_pt2e`` itself); ``epilogue.fold_epilogues`` does the same
   for the adder layers with no BatchNorm to fold, and for ``AdderLinear``.
2. ``torch.export``, then ``prepare_pt2e`` with ``AdderX86InductorQuantizer``: X86InductorQuantizer
   annotates what torch knows; the adder op's input gets the same uint8 per-tensor activation spec a
   conv input gets, and a residual add (with its ReLU) whose inputs it quantises is made int8 in,
   int8 out. One spec object everywhere, so that an edge whose spec equals its producer's output
   spec shares that observer: a block's input is quantised once for its first layer and its
   shortcut.
3. Calibration, ``convert_pt2e``, then ``lower_adders``: each ``dequantize -> adder -> [quantize]``
   becomes one ``adder_conv2d_u8`` reading the bytes of the quantize before it and, where the only
   user of its output is a quantize, writing that quantize's bytes (the requantising epilogue).

The adder needs x and w on one grid. The grid is the input's (the observer's scale and zero point,
0 on it); weights outside its range are clamped into it and the constant this changes is folded into
the shift (the lossless range clamp of ``QuantAdderConv2d``), so the weight needs no observer.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from .. import backends
from ..functional_u8 import check_finite, quantize_tensor
from ..nn.quant_adder_conv import clamp_weights
from .calibration import calibration_batches, checked, inputs

__all__ = ["AdderX86InductorQuantizer", "compile_frozen", "cpu_has_vnni", "guard_inputs", "lower_adders",
           "pt2e_available", "quantize_input_u8", "quantize_pt2e", "x86_quantization_config"]

_ADDER_FUSED = "adder_conv2d_fused"
_ADDER = "adder_conv2d"


def pt2e_available() -> str | None:
    """None when torchao's PT2E flow can be used here, else why not."""
    try:
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401
    except Exception as exc:  # noqa: BLE001  (missing, or built for another torch)
        return f"torchao is not importable ({type(exc).__name__}: {exc}); pip install 'torch-addernet[int8]'"
    return None


def _is_op(node: fx.Node, name: str) -> bool:
    t = node.target
    return node.op == "call_function" and getattr(t, "namespace", None) == "addernet" and \
        getattr(t, "_schema", None) is not None and t._schema.name == f"addernet::{name}"


def _is_adder(node: fx.Node) -> bool:
    return _is_op(node, _ADDER_FUSED) or _is_op(node, _ADDER)


def _q_ops():
    qd = torch.ops.quantized_decomposed
    return qd.quantize_per_tensor.default, qd.dequantize_per_tensor.default


def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies uint8 by int8 with VNNI (AVX-512 VNNI, as torch detects it)."""
    is_vnni = getattr(torch.cpu, "_is_vnni_supported", None)
    return bool(is_vnni()) if is_vnni is not None else False


def x86_quantization_config(reduce_range: bool | None = None):
    """torchao's default X86 Inductor config, with ``reduce_range`` (activations on 0..127) on a
    CPU without VNNI, as torchao's docstring asks: there oneDNN's u8 x s8 kernels add pairs of
    products in int16 (``vpmaddubsw``), which saturate for full-range activations, and the compiled
    model then disagrees with its own graph (measured here on an AVX2-only AMD EPYC: logits off by
    up to 0.6). 7-bit activations keep every such sum in range."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import get_default_x86_inductor_quantization_config

    return get_default_x86_inductor_quantization_config(
        reduce_range=not cpu_has_vnni() if reduce_range is None else reduce_range)


class AdderX86InductorQuantizer:
    """X86InductorQuantizer, plus the adder ops and the residual adds between them.

    ``quantize_adds``: an ``add`` (optionally followed by a ReLU) whose inputs are adder outputs or
    already-quantised tensors is annotated int8 in, int8 out, so that Inductor fuses
    dequantize-add-relu-quantize into one loop over bytes (X86InductorQuantizer itself quantises an
    add only when a convolution feeds it).
    """

    def __new__(cls, *args, **kwargs):
        # Subclass torchao's Quantizer lazily, so that importing addernet does not import torchao.
        from torchao.quantization.pt2e.quantizer import Quantizer

        impl = type("AdderX86InductorQuantizer", (_AdderQuantizerImpl, Quantizer), {})
        return impl(*args, **kwargs)


class _AdderQuantizerImpl:
    def __init__(self, quantize_adds: bool = True):
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import X86InductorQuantizer

        super().__init__()
        self.x86 = X86InductorQuantizer().set_global(x86_quantization_config())
        # The adder ops and the adds between them read bytes exactly (sums of |qx - qw| in int32),
        # so their activations keep the full 0..255 range even where torch's convs need 0..127.
        self.act = x86_quantization_config(reduce_range=False).input_activation
        self.quantize_adds = quantize_adds

    def _annotate(self, node: fx.Node, inputs, output: bool) -> None:
        from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import _X86InductorQuantizationAnnotation

        node.meta["quantization_annotation"] = _X86InductorQuantizationAnnotation(
            input_qspec_map={a: self.act for a in inputs}, output_qspec=self.act if output else None,
            _annotated=True, _is_output_of_quantized_pattern=output)
        assert isinstance(node.meta["quantization_annotation"], QuantizationAnnotation)

    def annotate(self, gm: fx.GraphModule) -> fx.GraphModule:
        self.x86.annotate(gm)
        for node in gm.graph.nodes:
            if _is_adder(node) and "quantization_annotation" not in node.meta:
                self._annotate(node, [node.args[0]], output=False)
        if self.quantize_adds:
            for node in gm.graph.nodes:
                if node.target not in (torch.ops.aten.add.Tensor, operator.add) or "quantization_annotation" in node.meta:
                    continue
                a, b = node.args[:2]
                if not all(isinstance(t, fx.Node) and t.meta.get("val") is not None and
                           isinstance(t.meta["val"], torch.Tensor) and t.meta["val"].dim() == 4 for t in (a, b)):
                    continue
                if not any(_is_adder(t) for t in (a, b)):
                    continue
                users = list(node.users)
                relu = users[0] if len(users) == 1 and users[0].target in (
                    torch.ops.aten.relu.default, torch.ops.aten.relu_.default) else None
                self._annotate(node, [a, b], output=relu is None)
                if relu is not None:
                    self._annotate(relu, [], output=True)
        return gm

    def validate(self, gm: fx.GraphModule) -> None:
        self.x86.validate(gm)


@torch.library.custom_op("addernet::quantize_input_u8", mutates_args=())
def quantize_input_u8(x: torch.Tensor, scale: float, zero_point: int, quant_min: int = 0,
                      quant_max: int = 255) -> torch.Tensor:
    """torch's quantize_per_tensor (uint8, on quant_min..quant_max) of a graph input, refusing NaN
    and inf first: no byte stands for them, and torch's own quantize would turn them into finite bytes."""
    check_finite(x, "the model's input")
    return torch.ops.quantized_decomposed.quantize_per_tensor(x, scale, zero_point, quant_min, quant_max, torch.uint8)


@quantize_input_u8.register_fake
def _(x, scale, zero_point, quant_min=0, quant_max=255):
    return torch.empty_like(x, dtype=torch.uint8)


def guard_inputs(gm: fx.GraphModule) -> int:
    """Each uint8 quantize of a graph input becomes ``quantize_input_u8`` (the quantise boundary's
    NaN/inf check); returns how many. Inside the graph every tensor derives from bytes and is finite."""
    quant, _ = _q_ops()
    n = 0
    for node in list(gm.graph.nodes):
        if node.target == quant and node.args[0].op == "placeholder" and node.args[5] == torch.uint8:
            with gm.graph.inserting_before(node):
                new = gm.graph.call_function(torch.ops.addernet.quantize_input_u8.default,
                                             (node.args[0], float(node.args[1]), int(node.args[2]),
                                              int(node.args[3]), int(node.args[4])))
            node.replace_all_uses_with(new)
            gm.graph.erase_node(node)
            n += 1
    gm.recompile()
    return n


def compile_frozen(model: nn.Module, example: torch.Tensor):
    """``torch.compile`` with Inductor's freezing (weights as constants, torch's int8 patterns
    folded into oneDNN kernels), compiled by one call on ``example`` so that it is ready to time.

    Sets ``torch._inductor.config.freezing = True`` for the process: patched around the first call
    only, a model compiled first in a process measured 2x slower (int8 patterns unfused), as if part
    of the compilation read the flag after the patch had ended."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    compiled = torch.compile(model)
    with torch.no_grad():
        compiled(example)
    return compiled


def _get_attr(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor:
    if node.op != "get_attr":
        raise ValueError(f"lower_adders(): the adder's weight {node.name} is not a constant of the graph (an "
                         "AdderConv2d/AdderLinear exported as it is: addernet.quant.epilogue.fold_epilogues, which "
                         "addernet.quantize runs, makes it one)")
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def lower_adders(gm: fx.GraphModule) -> list[str]:
    """Replaces each ``dequantize_per_tensor(uint8) -> adder op [-> quantize_per_tensor]`` in a
    ``convert_pt2e`` graph by one ``adder_conv2d_u8``; returns the module paths of the layers lowered.

    An adder op whose input is not a uint8 dequantize is left as it is (and not in the list)."""
    # The uint8 op the backend in force provides (the registry's one rule): the native backend's is
    # the registered torch op, which torch.compile keeps as one node; another backend's is its
    # Python function, which the graph calls as it is. Fixed here, at lowering: a graph has no
    # per-call backend choice.
    u8 = backends.op("adder_conv2d_u8", None, "cpu")
    u8_op = getattr(u8, "default", u8)
    quant, dequant = _q_ops()
    lowered = []
    for node in list(gm.graph.nodes):
        if not _is_adder(node):
            continue
        x = node.args[0]
        if not (isinstance(x, fx.Node) and x.target == dequant and x.args[5] == torch.uint8):
            continue
        qx, s, z = x.args[0], float(x.args[1]), int(x.args[2])
        if _is_op(node, _ADDER_FUSED):
            _, w, scale, shift, stride, padding, dilation, groups, relu = (list(node.args) + [False])[:9]
            scale, shift = _get_attr(gm, scale), _get_attr(gm, shift)
        else:
            _, w, stride, padding, dilation, groups = node.args
            w_t = _get_attr(gm, w)
            scale, shift, relu = torch.ones(w_t.shape[0]), torch.zeros(w_t.shape[0]), False
        weight = _get_attr(gm, w).detach().float()
        # The input's grid: [(0 - z) s, (255 - z) s], 0 on it; weights clamped into it losslessly.
        weight, shift = clamp_weights(weight, scale.detach().float(), shift.detach().float(), -z * s, (255 - z) * s)
        qw = quantize_tensor(weight, s, z).contiguous(memory_format=torch.channels_last)
        users = list(node.users)
        # The op's fused requantisation writes bytes on 0..255; a narrower range (reduce_range, on
        # CPUs without VNNI) stays a quantize node of its own after the op's float output.
        out_q = users[0] if (len(users) == 1 and users[0].target == quant and users[0].args[5] == torch.uint8
                             and tuple(users[0].args[3:5]) == (0, 255)) else None
        prefix = node.name
        for suffix, t in (("qweight", qw), ("scale", (scale.detach().float() * s).contiguous()),
                          ("shift", shift.contiguous())):
            gm.register_buffer(f"{prefix}_u8_{suffix}", t)
        with gm.graph.inserting_before(node):
            attrs = [gm.graph.get_attr(f"{prefix}_u8_{k}") for k in ("qweight", "scale", "shift")]
            kwargs = {}
            if out_q is not None:
                kwargs = dict(out_scale=float(out_q.args[1]), out_zero_point=int(out_q.args[2]))
            new = gm.graph.call_function(
                u8_op,
                (qx, attrs[0], z, attrs[1], attrs[2], list(stride), list(padding), list(dilation), int(groups), bool(relu)),
                kwargs)
        if out_q is not None:
            out_q.replace_all_uses_with(new)
            gm.graph.erase_node(out_q)
        else:
            node.replace_all_uses_with(new)
        stack = node.meta.get("nn_module_stack") or {}
        lowered.append(list(stack.values())[-1][0] if stack else prefix)  # the layer's module path
        gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return lowered


def quantize_pt2e(model: nn.Module, calib_loader, *, batches: int = 8, example=None,
                  quantizer=None, lower: bool = True, guard: bool = True, progress: bool = False):
    """export -> prepare_pt2e -> calibrate -> convert_pt2e (-> lower_adders): a GraphModule.

    ``quantizer`` defaults to ``AdderX86InductorQuantizer()``; with X86InductorQuantizer itself this
    is torch's own int8 CNN flow (the baseline the benchmarks compare against; ``lower`` and
    ``guard`` (``guard_inputs``) False leave its graph as torch makes it). Compile the result
    with ``torch.compile`` under ``torch._inductor.config.freezing = True`` for torch's int8 kernels.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e


    model = model.eval()
    if example is None:
        try:
            example = checked(inputs(next(iter(calib_loader))), 0)
        except StopIteration:
            raise ValueError("quantize(): calib_loader gave no batches to calibrate on") from None
    # The batch is dynamic, so that the model runs any batch size (Dim.AUTO: export decides
    # whether the model allows it).
    gm = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()
    gm = prepare_pt2e(gm, quantizer if quantizer is not None else AdderX86InductorQuantizer())
    with torch.no_grad():
        for x in calibration_batches(calib_loader, batches, progress):
            gm(x)
    gm = convert_pt2e(gm)
    # An exported module refuses .eval()/.train() ("not supported yet"); torchao's helper makes them
    # switch the ops that differ (dropout, batch norm) instead, so that evaluation loops can call them.
    from torchao.quantization.pt2e import allow_exported_model_train_eval, move_exported_model_to_eval

    move_exported_model_to_eval(gm)
    allow_exported_model_train_eval(gm)
    gm.quantized_layers = lower_adders(gm) if lower else []
    if guard:
        guard_inputs(gm)
    if lower:
        left = [n.name for n in gm.graph.nodes if _is_adder(n)]
        if left:
            raise RuntimeError(f"quantize_pt2e(): adder layers left in float (no uint8 input found): {left}")
    return gm

