"""The uint8 adder layer that ``addernet.quantize`` puts in place of an adder layer (and the
BatchNorm/ReLU folded into it). Inference only. It lives with the other layer variants; ``quant``
imports it from here (never the reverse), and ``addernet.quant.layer`` is its old name."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import same_padding
from ..functional_u8 import adder_conv2d_u8, check_finite, quantize_tensor, shared_qparams

__all__ = ["QuantAdderConv2d", "clamp_weights"]


def _padding(padding, kernel, stride, dilation):
    """(symmetric (ph, pw), explicit (left, right, top, bottom) or None) from conv2d-style padding."""
    if not isinstance(padding, str):
        return tuple(padding), None
    if padding == "valid":
        return (0, 0), None
    if tuple(stride) != (1, 1):
        raise ValueError("padding='same' is not supported for strided adder convolutions")
    left, right, top, bottom = same_padding(tuple(kernel), tuple(dilation))
    if left == right and top == bottom:
        return (top, left), None
    return (0, 0), (left, right, top, bottom)


def clamp_weights(weight, scale, shift, lo: float, hi: float):
    """Weights clamped into the input range [lo, hi], and the shift that keeps the layer exact there.

    For x in [lo, hi], |x - w| - |x - clamp(w)| is lo - w below the range and w - hi above it, a
    constant per filter: y = scale * -sum|x - w| + shift = scale * -sum|x - clamp(w)| + shift',
    shift' = shift - scale * sum(that constant) (Nie et al. 2022, lossless range clamp)."""
    below = (lo - weight).clamp(min=0).flatten(1).sum(1)
    above = (weight - hi).clamp(min=0).flatten(1).sum(1)
    return weight.clamp(lo, hi), shift - (below + above) * scale


class QuantAdderConv2d(nn.Module):
    """y = relu?(scale * adder(x, w) + shift) with x and w on shared uint8 grids.

    ``weight`` (O, C/groups, kH, kW) float, ``scale``/``shift`` (O,) the folded epilogue (BatchNorm,
    bias), ``x_range`` the calibrated input range (outliers already clamped).

    - ``weight_clamp`` (Nie et al. 2022, lossless range clamp): weights beyond the input range are
      clamped into it. For an x inside [lo, hi], |x - w| - |x - clamp(w)| does not depend on x
      (it is lo - w below, w - hi above), so the clamp is exact once that constant per filter is
      subtracted in the epilogue's shift; it spares the grid the weights' outliers.
    - ``filter_groups`` > 1 (Nie et al. 2022, weights clustered into groups with a scale each):
      filters sorted by the span of their weights are cut into groups of equal size; each group
      has its own grid (its weights' range and the input's), so the input is quantised once per
      group and the op runs once per group. Only for layers with groups=1.

    ``out_qparams`` (scale, zero point), when set, requantises the output to uint8 for the next
    quantised layer; ``uint8_input`` says that this layer receives such bytes.
    """

    def __init__(self, weight, scale, shift, relu, stride, padding, dilation, groups, x_range, *,
                 filter_groups: int = 1, weight_clamp: bool = True):
        super().__init__()
        weight = weight.detach().float()
        scale = scale.detach().float()
        shift = shift.detach().float()
        for t, what in ((weight, "weight"), (scale, "epilogue scale"), (shift, "epilogue shift")):
            check_finite(t, f"QuantAdderConv2d: the {what}")
        self.out_channels, cg, kh, kw = weight.shape
        self.in_channels = cg * groups
        self.kernel_size = (kh, kw)
        self.stride, self.dilation, self.groups, self.relu = tuple(stride), tuple(dilation), int(groups), bool(relu)
        self.padding, self.explicit_pad = _padding(padding, (kh, kw), stride, dilation)
        lo, hi = min(float(x_range[0]), 0.0), max(float(x_range[1]), 0.0)
        self.x_range = (lo, hi)
        if weight_clamp:
            weight, shift = clamp_weights(weight, scale, shift, lo, hi)
        if filter_groups > 1 and groups != 1:
            raise ValueError(f"filter_groups={filter_groups} needs a layer with groups=1, this one has groups={groups}")
        k = max(1, min(int(filter_groups), self.out_channels))
        flat = weight.flatten(1)
        order = torch.argsort(flat.amax(1) - flat.amin(1), stable=True) if k > 1 else torch.arange(self.out_channels)
        self.qparams: list[tuple[float, int]] = []
        for j, idx in enumerate(torch.tensor_split(order, k)):
            w = weight[idx]
            s, z = shared_qparams(min(lo, float(w.min())), max(hi, float(w.max())))
            self.qparams.append((s, z))
            # Channels last: each kernel row's bytes lie as the op's patch runs do, so the op packs
            # them with one copy a run instead of transposing every filter (a tenth of ResNet-18's
            # 512-channel layer).
            self.register_buffer(f"qweight{j}", quantize_tensor(w, s, z).contiguous(memory_format=torch.channels_last))
            self.register_buffer(f"scale{j}", (scale[idx] * s).contiguous())
            self.register_buffer(f"shift{j}", shift[idx].contiguous())
        # Output channel o of the concatenated group outputs comes from inverse[o].
        self.register_buffer("inverse", torch.argsort(order) if k > 1 else None)
        self.out_qparams: tuple[float, int] | None = None
        self.uint8_input = False

    def extra_repr(self) -> str:
        grids = ", ".join(f"s={s:.4g} z={z}" for s, z in self.qparams)
        out = f", requantise(s={self.out_qparams[0]:.4g} z={self.out_qparams[1]})" if self.out_qparams else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, relu={self.relu}, uint8_input={self.uint8_input}, grids=[{grids}]{out}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.uint8_input != (x.dtype == torch.uint8):
            raise TypeError(f"QuantAdderConv2d expects a {'uint8' if self.uint8_input else 'float'} input, got {x.dtype}")
        if x.dtype != torch.uint8:
            x = x.float()
        if self.explicit_pad is not None:
            x = F.pad(x, self.explicit_pad, value=self.qparams[0][1] if self.uint8_input else 0.0)
        outs = []
        for j, (s, z) in enumerate(self.qparams):
            out_s, out_z = self.out_qparams if self.out_qparams is not None else (None, 0)
            outs.append(adder_conv2d_u8(
                x, getattr(self, f"qweight{j}"), z, getattr(self, f"scale{j}"), getattr(self, f"shift{j}"),
                self.stride, self.padding, self.dilation, self.groups, self.relu, out_scale=out_s,
                out_zero_point=out_z, input_scale=None if self.uint8_input else s))
        if len(outs) == 1:
            return outs[0]
        return torch.cat(outs, 1).index_select(1, self.inverse)
