"""Triton kernels of the adder convolution; the launch logic and op registration are in triton.py.

All three kernels read NCHW-contiguous tensors and rebuild im2col addresses on the fly, so no
unfolded copy of the input is ever materialised. Index arithmetic is int32 (the launcher checks
that every tensor fits), accumulation is float32 whatever the input dtype.

- forward: a program owns BLOCK_P output positions x BLOCK_O output channels and walks the
  reduction K = Cg*KH*KW in BLOCK_K slices. |x - w| cannot be a tensor-core dot, so each slice
  is a [P, K, 1] - [1, K, O] broadcast reduced over K; a small BLOCK_K keeps it in registers.
- input gradient: a gather rather than a scatter. A program owns BLOCK_Q input pixels x
  BLOCK_C input channels and visits, for each kernel tap, the one output position (if any) that
  read the pixel through that tap. Every grad_x element is then written once: no atomics, no
  float32 scratch buffer, a deterministic result, and padded taps (which read no pixel) give
  no gradient by construction.
- weight gradient: sum_{n,p} G*(Xcol - W) = G^T @ Xcol - W * sum_p G, so the bulk is a real
  matrix product that tl.dot runs on tensor cores for float16/bfloat16. Float32 operands ask
  for IEEE precision so that they are not silently rounded to TF32. The reduction over N*OH*OW
  is split across programs writing float32 partials (summed by the launcher) so that small
  weights still fill the GPU.
"""
import os

import triton
import triton.language as tl


def _interpret_mode() -> bool:
    # triton.jit picks the interpreter when a kernel is defined, i.e. when this module is imported.
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET") == "1"


# Autotuning in the interpreter would run every config on the CPU, slowly; one config suffices.
INTERPRET = _interpret_mode()


def _configs(interp: dict, gpu: list[tuple[dict, int, int]]) -> list[triton.Config]:
    if INTERPRET:
        return [triton.Config(interp, num_warps=1, num_stages=1)]
    return [triton.Config(meta, num_warps=w, num_stages=s) for meta, w, s in gpu]


# GPU candidates: a spread of tile shapes that compile for sm_80 and sm_90, in every dtype, without
# spilling (tests/backends/triton_compile_check.py compiles them and reads the cubins; the float32 weight
# gradient's tl.dot runs on FMAs and needed 8 warps for its larger tiles). They were not timed (no
# GPU was at hand), so the autotuner has the final say.
_FWD_CONFIGS = _configs(
    {"BLOCK_P": 64, "BLOCK_O": 16, "BLOCK_K": 32},
    [
        ({"BLOCK_P": 64, "BLOCK_O": 32, "BLOCK_K": 8}, 4, 3),
        ({"BLOCK_P": 32, "BLOCK_O": 64, "BLOCK_K": 8}, 4, 3),
        ({"BLOCK_P": 64, "BLOCK_O": 32, "BLOCK_K": 4}, 4, 2),
        ({"BLOCK_P": 32, "BLOCK_O": 32, "BLOCK_K": 8}, 4, 2),
        ({"BLOCK_P": 32, "BLOCK_O": 64, "BLOCK_K": 4}, 4, 2),
        ({"BLOCK_P": 64, "BLOCK_O": 64, "BLOCK_K": 4}, 8, 2),
        ({"BLOCK_P": 128, "BLOCK_O": 64, "BLOCK_K": 2}, 8, 2),
    ],
)

_GX_CONFIGS = _configs(
    {"BLOCK_Q": 128, "BLOCK_C": 16, "BLOCK_O": 32},
    [
        ({"BLOCK_Q": 32, "BLOCK_C": 32, "BLOCK_O": 8}, 4, 2),
        ({"BLOCK_Q": 32, "BLOCK_C": 32, "BLOCK_O": 16}, 4, 2),
        # The NaN-propagating clamp costs registers: (64, 32, 4) spilled on sm_90 in float32 at 4
        # warps, so it runs with 8; (64, 64, *) spilled even at BLOCK_O=2 and is gone.
        ({"BLOCK_Q": 64, "BLOCK_C": 32, "BLOCK_O": 4}, 8, 2),
        ({"BLOCK_Q": 64, "BLOCK_C": 32, "BLOCK_O": 8}, 8, 2),
    ],
)

# tl.dot needs every block dimension to be at least 16.
_GW_CONFIGS = _configs(
    {"BLOCK_P": 64, "BLOCK_O": 16, "BLOCK_K": 32},
    [
        ({"BLOCK_P": 32, "BLOCK_O": 64, "BLOCK_K": 64}, 8, 2),
        ({"BLOCK_P": 64, "BLOCK_O": 32, "BLOCK_K": 64}, 8, 2),
        ({"BLOCK_P": 64, "BLOCK_O": 64, "BLOCK_K": 32}, 8, 2),
        ({"BLOCK_P": 32, "BLOCK_O": 32, "BLOCK_K": 64}, 4, 3),
        ({"BLOCK_P": 32, "BLOCK_O": 32, "BLOCK_K": 32}, 4, 3),
    ],
)


@triton.autotune(configs=_FWD_CONFIGS, key=["P_TOTAL", "Og", "K_TOTAL", "groups"])
@triton.jit
def adder_fwd_kernel(
    x_ptr, w_ptr, y_ptr,
    C, H, W, OH, OW, Cg, Og, groups, KH, KW,
    SH, SW, PH, PW, DH, DW,
    P_TOTAL, K_TOTAL,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_p = tl.program_id(0)
    pid_go = tl.program_id(1)
    n_o_tiles = tl.cdiv(Og, BLOCK_O)
    g = pid_go // n_o_tiles
    o = (pid_go % n_o_tiles) * BLOCK_O + tl.arange(0, BLOCK_O)
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < P_TOTAL
    o_ok = o < Og

    ow = p % OW
    oh = (p // OW) % OH
    n = p // (OW * OH)
    ih0 = oh * SH - PH
    iw0 = ow * SW - PW
    x_base = (n * C + g * Cg) * (H * W)
    w_base = (g * Og + o) * K_TOTAL

    acc = tl.zeros((BLOCK_P, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K_TOTAL, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        k_ok = k < K_TOTAL
        v = k % KW
        u = (k // KW) % KH
        c = k // (KW * KH)
        ih = ih0[:, None] + (u * DH)[None, :]
        iw = iw0[:, None] + (v * DW)[None, :]
        inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        # A padded tap reads 0 and so adds |w|; a tap past K reads 0 against w=0 and adds nothing.
        xm = inside & p_ok[:, None] & k_ok[None, :]
        x_off = x_base[:, None] + (c * (H * W))[None, :] + ih * W + iw
        xv = tl.load(x_ptr + x_off, mask=xm, other=0.0)
        wm = k_ok[:, None] & o_ok[None, :]
        wv = tl.load(w_ptr + w_base[None, :] + k[:, None], mask=wm, other=0.0)
        d = xv.to(tl.float32)[:, :, None] - wv.to(tl.float32)[None, :, :]
        acc += tl.sum(tl.abs(d), axis=1)

    y_row = (n * (groups * Og) + g * Og) * (OH * OW) + oh * OW + ow
    y_off = y_row[:, None] + (o * (OH * OW))[None, :]
    tl.store(y_ptr + y_off, (-acc).to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & o_ok[None, :])


@triton.autotune(configs=_GX_CONFIGS, key=["Q_TOTAL", "Og", "Cg", "KH", "KW", "groups"])
@triton.jit
def adder_grad_input_kernel(
    g_ptr, x_ptr, w_ptr, gx_ptr,
    H, W, OH, OW, Cg, Og, groups, KH, KW,
    SH, SW, PH, PW, DH, DW,
    Q_TOTAL,
    BLOCK_Q: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_O: tl.constexpr,
):
    pid_q = tl.program_id(0)
    pid_gc = tl.program_id(1)
    n_c_tiles = tl.cdiv(Cg, BLOCK_C)
    g = pid_gc // n_c_tiles
    c = (pid_gc % n_c_tiles) * BLOCK_C + tl.arange(0, BLOCK_C)
    q = pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)
    q_ok = q < Q_TOTAL
    c_ok = c < Cg
    iw = q % W
    ih = (q // W) % H
    n = q // (W * H)
    C = groups * Cg
    O = groups * Og
    KK = KH * KW

    x_off = ((n * C + g * Cg)[:, None] + c[None, :]) * (H * W) + (ih * W + iw)[:, None]
    xc_ok = q_ok[:, None] & c_ok[None, :]
    xv = tl.load(x_ptr + x_off, mask=xc_ok, other=0.0).to(tl.float32)

    # Loop-invariant parts of the offsets, hoisted: every integer op costs in the interpreter.
    ihp = ih + PH
    iwp = iw + PW
    g_nq = n * (O * OH * OW) + g * Og * (OH * OW)
    w_c = g * Og * (Cg * KK) + c * KK
    acc = tl.zeros((BLOCK_Q, BLOCK_C), dtype=tl.float32)
    for uv in range(0, KK):
        th = ihp - (uv // KW) * DH
        tw = iwp - (uv % KW) * DW
        # Negative numerators are masked out first, so C-style and floor division agree here.
        oh = th // SH
        ow = tw // SW
        hit = q_ok & (th >= 0) & (tw >= 0) & (th % SH == 0) & (tw % SW == 0) & (oh < OH) & (ow < OW)
        g_row = g_nq + oh * OW + ow
        for o0 in range(0, Og, BLOCK_O):
            o = o0 + tl.arange(0, BLOCK_O)
            o_ok = o < Og
            gv = tl.load(
                g_ptr + g_row[:, None] + (o * (OH * OW))[None, :],
                mask=hit[:, None] & o_ok[None, :], other=0.0,
            ).to(tl.float32)
            wv = tl.load(
                w_ptr + (o * (Cg * KK) + uv)[:, None] + w_c[None, :],
                mask=o_ok[:, None] & c_ok[None, :], other=0.0,
            ).to(tl.float32)
            # The reference's clamp: NaN propagates (tl's default min/max would drop it).
            # PropagateNan is a constexpr: it must be written at the call, not held in a variable.
            ht = tl.minimum(tl.maximum(wv[None, :, :] - xv[:, None, :], -1.0, propagate_nan=tl.PropagateNan.ALL),
                            1.0, propagate_nan=tl.PropagateNan.ALL)
            # A pixel this tap does not reach adds nothing, even where 0 * NaN would mark it. The mask
            # is on the 2-D sum (a 3-D one spills): padded filters (o >= Og) need none, since a NaN
            # there comes from x, which makes the real filters' sum NaN too.
            acc += tl.where(hit[:, None], tl.sum(gv[:, :, None] * ht, axis=1), 0.0)

    tl.store(gx_ptr + x_off, acc.to(gx_ptr.dtype.element_ty), mask=xc_ok)


@triton.autotune(configs=_GW_CONFIGS, key=["P_TOTAL", "Og", "K_TOTAL", "groups", "P_PER_SPLIT"])
@triton.jit
def adder_grad_weight_kernel(
    g_ptr, x_ptr, w_ptr, part_ptr,
    C, H, W, OH, OW, Cg, Og, groups, KH, KW,
    SH, SW, PH, PW, DH, DW,
    P_TOTAL, K_TOTAL, P_PER_SPLIT,
    DOT_F32: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_go = tl.program_id(0)
    pid_k = tl.program_id(1)
    split = tl.program_id(2)
    n_o_tiles = tl.cdiv(Og, BLOCK_O)
    g = pid_go // n_o_tiles
    o = (pid_go % n_o_tiles) * BLOCK_O + tl.arange(0, BLOCK_O)
    k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    o_ok = o < Og
    k_ok = k < K_TOTAL
    v = k % KW
    u = (k // KW) % KH
    c = k // (KW * KH)
    O = groups * Og

    p_start = split * P_PER_SPLIT
    p_end = tl.minimum(p_start + P_PER_SPLIT, P_TOTAL)
    acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=tl.float32)
    gsum = tl.zeros((BLOCK_O,), dtype=tl.float32)
    for p0 in range(p_start, p_end, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        p_ok = p < p_end
        ow = p % OW
        oh = (p // OW) % OH
        n = p // (OW * OH)
        g_row = n * (O * OH * OW) + oh * OW + ow
        gv = tl.load(
            g_ptr + g_row[:, None] + ((g * Og + o) * (OH * OW))[None, :],
            mask=p_ok[:, None] & o_ok[None, :], other=0.0,
        )
        ih = (oh * SH - PH)[:, None] + (u * DH)[None, :]
        iw = (ow * SW - PW)[:, None] + (v * DW)[None, :]
        inside = (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        # Padded taps read 0: they still count in sum_p G*(0 - W), through gsum below.
        xv = tl.load(
            x_ptr + (n * C + g * Cg)[:, None] * (H * W) + (c * (H * W))[None, :] + ih * W + iw,
            mask=inside & p_ok[:, None] & k_ok[None, :], other=0.0,
        )
        if DOT_F32:
            acc += tl.dot(tl.trans(gv.to(tl.float32)), xv.to(tl.float32), input_precision="ieee")
        else:
            acc += tl.dot(tl.trans(gv), xv)
        gsum += tl.sum(gv.to(tl.float32), axis=0)

    wv = tl.load(
        w_ptr + ((g * Og + o) * K_TOTAL)[:, None] + k[None, :],
        mask=o_ok[:, None] & k_ok[None, :], other=0.0,
    ).to(tl.float32)
    part = acc - wv * gsum[:, None]
    off = (split * O + g * Og + o)[:, None] * K_TOTAL + k[None, :]
    tl.store(part_ptr + off, part, mask=o_ok[:, None] & k_ok[None, :])
