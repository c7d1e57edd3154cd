"""A backend's convolution ops against the float64 definition: forward, fused epilogue, both
gradients (under each backward variant, e.g. the native CUDA weight-gradient routes) and the
backward's output masks, per dtype the backend takes, on fresh random inputs over small shapes
(``shapes.CHECK_SHAPES``) that reach every kernel tile configuration.

The definition runs on the CPU in float64 (the reference backend's forward and backward ops). Each
output element is compared against it with a tolerance relative to the sum of |terms| of that
element (what a rounding error scales with). On a GPU the caching allocator is poisoned with NaN
before each call, so an output element a kernel forgets to write shows up.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .. import backends
from .knobs import scoped_env, set_conv_tf32, sync
from .shapes import CHECK_SHAPES

# Error allowed relative to the sum of |terms| of each output element.
TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def expected(x, w, g, scale, shift, s):
    """Forward, fused, and both gradients in float64 on the CPU from the library's definition, each
    with the sum of |terms| of every element (what a rounding error scales with)."""
    x, w, g = x.double().cpu(), w.double().cpu(), g.double().cpu()
    conf = s.conv_args
    ref = backends.descriptor(backends.REFERENCE).ops
    with torch.no_grad():
        y = ref["adder_conv2d"](x, w, *conf)
    gi, gw = ref["adder_conv2d_backward"](g, x, w, *conf, (True, True))
    ag = g.abs()
    # grad_weight = sum G*(X - W), directly or as sum G*X - W*sum G (the cuDNN route): both are
    # bounded by sum |G|(|X| + |W|); padded taps (X = 0) count, as in the op.
    gw_scale = (torch.nn.grad.conv2d_weight(x.abs(), w.shape, ag, *conf)
                + w.abs() * ag.sum((0, 2, 3)).view(-1, 1, 1, 1))
    # grad_input = sum G*HardTanh(W - X). Its |terms| come from the same definition through
    # |HardTanh(d)| = clamp(d, 0, 1) + clamp(-d, 0, 1) and clamp(d, 0, 1) = (HardTanh(2d - 1) + 1) / 2,
    # with 2d - 1 = (2W - 1) - 2X: two more reference gradients and a sum of |G| over the taps.
    taps = torch.nn.grad.conv2d_input(x.shape, torch.ones_like(w), ag, *conf)
    up = ref["adder_conv2d_backward"](ag, 2 * x, 2 * w - 1, *conf, (True, False))[0]
    down = ref["adder_conv2d_backward"](ag, -2 * x, -2 * w - 1, *conf, (True, False))[0]
    gi_scale = (up + down) / 2 + taps
    sc, sf = scale.double().cpu().view(1, -1, 1, 1), shift.double().cpu().view(1, -1, 1, 1)
    fused = (sc * y + sf).clamp_min(0)
    return dict(y=(y, -y), fused=(fused, sc.abs() * -y + sf.abs()), gi=(gi, gi_scale), gw=(gw, gw_scale))


def poison(device, *shapes_dtypes):
    """Leaves NaN-filled blocks of these sizes in the CUDA caching allocator for the next op."""
    if device != "cuda":
        return  # the CPU allocator hands memory back to the system: nothing to poison
    blocks = [torch.full(shape, float("nan"), dtype=dt, device="cuda") for shape, dt in shapes_dtypes]
    torch.cuda.synchronize()
    del blocks


def check_close(got, want, dtype):
    """(ok, detail) of ``got`` against ``want`` = (float64 value, sum of |terms|); NaN is wrong."""
    want_v, scale = want
    got64 = got.detach().double().cpu()
    if got64.shape != want_v.shape:
        return False, f"shape {tuple(got64.shape)} != {tuple(want_v.shape)}"
    err = (got64 - want_v).abs()
    allowed = TOLERANCE[dtype] * (scale + want_v.abs()) + 1e-6
    bad = ~(err <= allowed)  # NaN counts as bad
    if bool(bad.any()):
        idx = int(bad.flatten().nonzero()[0])
        return False, (f"{int(bad.sum())}/{bad.numel()} wrong; first flat index {idx}: got "
                       f"{got64.flatten()[idx].item():.6g}, want {want_v.flatten()[idx].item():.6g}")
    rel = float((err / (scale + want_v.abs() + 1e-12)).max()) if err.numel() else 0.0
    return True, f"max rel err {rel:.2e}"


def check_dtypes(backend: str, device: str) -> tuple[torch.dtype, ...]:
    """The dtypes a check covers: those the backend's kernels take on ``device``, bar float64 (the
    definition's own precision, against which nothing is learnt)."""
    return tuple(dt for dt in backends.descriptor(backend).dtypes.get(device, ()) if dt in TOLERANCE)


def check_ops(backend: str, device: str, log: Callable[[str], None] = print,
              backward_variants: Mapping[str, Mapping[str, str]] | None = None, shapes=CHECK_SHAPES) -> list[dict]:
    """One row per check: dict(dtype, shape, check, ok, detail). ``backward_variants``: label ->
    environment under which the backward runs again (each a check of its own); None: once, as is.
    A check that raises is a failed check; the pass goes on."""
    ops = backends.descriptor(backend).ops
    variants = backward_variants or {"": {}}
    results = []
    set_conv_tf32(False)  # a route through cuDNN is checked at full float32 precision
    gen = torch.Generator().manual_seed(0)

    def record(dtype, shape, what, ok, msg, quiet=False):
        results.append(dict(dtype=str(dtype).replace("torch.", ""), shape=shape, check=what, ok=ok, detail=msg))
        if not (quiet and ok):
            log(f"  [{'ok' if ok else 'FAIL'}] {results[-1]['dtype']:8s} {shape:14s} {what:22s} {msg}")

    for dtype in check_dtypes(backend, device):
        for s in shapes:
            oh, ow = s.out_hw
            x = (torch.rand(s.batch, s.cin, *s.in_hw, generator=gen) * 4 - 2).to(dtype)
            w = (torch.rand(s.cout, s.cin // s.groups, s.kernel, s.kernel, generator=gen) * 2 - 1).to(dtype)
            g = (torch.rand(s.batch, s.cout, oh, ow, generator=gen) * 2 - 1).to(dtype)
            # The folded BatchNorm terms travel in the activation dtype, as the op requires.
            scale = (torch.rand(s.cout, generator=gen) * 3 - 1.5).to(dtype)
            shift = (torch.rand(s.cout, generator=gen) * 4 - 2).to(dtype)
            ref = expected(x, w, g, scale, shift, s)
            xd, wd, gd = x.to(device), w.to(device), g.to(device)
            conf = s.conv_args

            def check(what, fn, want_key, index=None):
                try:
                    out = fn()
                    sync(device)
                    ok, msg = check_close(out if index is None else out[index], ref[want_key], dtype)
                except Exception as exc:  # a crash is a failed check, the pass goes on
                    ok, msg = False, f"{type(exc).__name__}: {exc}"
                record(dtype, s.name, what, ok, msg)

            ysz = ((s.batch, s.cout, oh, ow), dtype)
            poison(device, ysz)
            check("forward", lambda: ops["adder_conv2d"](xd, wd, *conf), "y")
            poison(device, ysz)
            check("fused scale+shift+relu", lambda: ops["adder_conv2d_fused"](
                xd, wd, scale.to(device), shift.to(device), *conf, True), "fused")
            poison(device, ysz)
            check("forward channels_last", lambda: ops["adder_conv2d"](
                xd.to(memory_format=torch.channels_last), wd, *conf), "y")
            for label, env in variants.items():
                with scoped_env(env):
                    for what, key, index in (("grad_input", "gi", 0), ("grad_weight", "gw", 1)):
                        poison(device, (tuple(x.shape), dtype), (tuple(w.shape), dtype))
                        check(f"{what} [{label}]" if label else what, lambda: ops["adder_conv2d_backward"](
                            gd, xd, wd, *conf, [True, True]), key, index)
            # Output masks: the masked gradient must come back as an empty tensor.
            try:
                gi, gw = ops["adder_conv2d_backward"](gd, xd, wd, *conf, [True, False])
                gi2, gw2 = ops["adder_conv2d_backward"](gd, xd, wd, *conf, [False, True])
                ok = gw.shape == (0,) and gi2.shape == (0,) and gi.shape == x.shape and gw2.shape == w.shape
                msg = f"shapes {tuple(gi.shape)} {tuple(gw.shape)} {tuple(gi2.shape)} {tuple(gw2.shape)}"
            except Exception as exc:
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            record(dtype, s.name, "output_mask", ok, msg, quiet=True)
    if torch.float64 not in backends.descriptor(backend).dtypes.get(device, (torch.float64,)):
        # a dtype the kernels do not take must be refused with a message, not crash
        try:
            ops["adder_conv2d"](torch.zeros(1, 1, 3, 3, device=device, dtype=torch.float64),
                                torch.zeros(1, 1, 1, 1, device=device, dtype=torch.float64), (1, 1), (0, 0), (1, 1), 1)
            ok, msg = False, f"float64 on {device} was accepted"
        except RuntimeError as exc:
            ok, msg = "float64" in str(exc), str(exc).splitlines()[0]
        record("float64", "-", f"refused on {device.upper()}", ok, msg)
    return results
