"""The Triton backend against an independent float64 definition.

Without a GPU the kernels run in Triton's interpreter, which is slow: shapes stay tiny. On a GPU
machine TRITON_INTERPRET is left unset and the same tests run on CUDA tensors.
"""
import os

import torch

# triton.jit picks the interpreter when a kernel is defined, so this must precede importing
# addernet.backends.triton (it does nothing if another module imported the kernels first).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytest.importorskip("triton")

import addernet  # noqa: E402
from addernet import backends  # noqa: E402
from addernet.backends import triton as tb  # noqa: E402
from addernet.backends import triton_kernels as tk  # noqa: E402

pytestmark = pytest.mark.triton

if not (tk.INTERPRET or torch.cuda.is_available()):
    pytest.skip(
        "no CUDA GPU and the Triton kernels were defined without TRITON_INTERPRET=1 (some "
        "earlier import loaded them); run with TRITON_INTERPRET=1 in the environment",
        allow_module_level=True,
    )

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def direct(x, w, g_out, stride, padding, dilation, groups):
    """Forward and the paper's gradients, tap by tap in float64, with no unfold/fold."""
    x, w, g_out = x.double(), w.double(), g_out.double()
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = F.pad(x, (pw, pw, ph, ph))
    n, c, hp, wp = xp.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    y = x.new_zeros((n, o, oh, ow))
    gxp = torch.zeros_like(xp)
    gw = torch.zeros_like(w)
    gg = g_out.view(n, groups, og, 1, oh, ow)
    for u in range(kh):
        for v in range(kw):
            rows = slice(u * dh, u * dh + sh * (oh - 1) + 1, sh)
            cols = slice(v * dw, v * dw + sw * (ow - 1) + 1, sw)
            patch = xp[:, :, rows, cols].reshape(n, groups, 1, cg, oh, ow)
            wt = w[:, :, u, v].reshape(1, groups, og, cg, 1, 1)
            diff = patch - wt
            y -= diff.abs().sum(3).reshape(n, o, oh, ow)
            gw[:, :, u, v] = (gg * diff).sum((0, 4, 5)).reshape(o, cg)
            gxp[:, :, rows, cols] += (gg * (-diff).clamp(-1, 1)).sum(2).reshape(n, c, oh, ow)
    gx = gxp[:, :, ph : ph + x.shape[2], pw : pw + x.shape[3]]
    return y, gx, gw


def run_triton(x, w, g_out, stride, padding, dilation, groups):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    y = tb.adder_conv2d(x, w, stride, padding, dilation, groups)
    gx, gw = torch.autograd.grad(y, (x, w), g_out)
    return y, gx, gw


def assert_near(actual, expected, rel, what):
    assert actual.shape == expected.shape, what
    err = (actual.double().cpu() - expected.cpu()).abs().max().item() if expected.numel() else 0.0
    scale = max(1.0, expected.abs().max().item() if expected.numel() else 0.0)
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} * {scale:.3g}"


def make(n, c, h, w, o, kh, kw, groups, stride, padding, dilation, dtype=torch.float32):
    gen = torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + o + kh + kw)
    x = torch.randn(n, c, h, w, generator=gen).to(DEVICE, dtype)
    wt = torch.randn(o, c // groups, kh, kw, generator=gen).to(DEVICE, dtype)
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    g_out = torch.randn(n, o, oh, ow, generator=gen).to(DEVICE, dtype)
    return x, wt, g_out


CONFIGS = {
    # (n, c, h, w, o, kh, kw, groups, stride, padding, dilation)
    "3x3-pad1": (2, 3, 7, 6, 4, 3, 3, 1, (1, 1), (1, 1), (1, 1)),
    "stride2-pad-groups2-2x3": (2, 4, 9, 8, 6, 2, 3, 2, (2, 2), (1, 2), (1, 1)),
    "dilation2": (1, 2, 9, 9, 3, 3, 3, 1, (1, 1), (2, 2), (2, 2)),
    "odd-stride21-1x1-groups3": (3, 3, 5, 7, 6, 1, 1, 3, (2, 1), (0, 1), (1, 1)),
    # K = 45 and Og = 36 exceed one block, so the K loop and the channel tiling are exercised.
    "wide": (1, 5, 6, 5, 36, 3, 3, 1, (1, 1), (1, 0), (1, 1)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_direct_float32(name):
    n, c, h, w, o, kh, kw, groups, stride, padding, dilation = CONFIGS[name]
    x, wt, g_out = make(*CONFIGS[name])
    got = run_triton(x, wt, g_out, stride, padding, dilation, groups)
    want = direct(x, wt, g_out, stride, padding, dilation, groups)
    for a, b, what in zip(got, want, ("output", "grad_input", "grad_weight")):
        assert a.dtype == torch.float32
        assert_near(a, b, 1e-4, f"{name} {what}")


@pytest.mark.parametrize("dtype,rel", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
def test_low_precision_accumulates_in_float32(dtype, rel):
    conf = CONFIGS["stride2-pad-groups2-2x3"]
    x, wt, g_out = make(*conf, dtype=dtype)
    stride, padding, dilation, groups = conf[8], conf[9], conf[10], conf[7]
    got = run_triton(x, wt, g_out, stride, padding, dilation, groups)
    want = direct(x, wt, g_out, stride, padding, dilation, groups)
    for a, b, what in zip(got, want, ("output", "grad_input", "grad_weight")):
        assert a.dtype == dtype, what
        assert_near(a, b, rel, f"{dtype} {what}")


def test_channels_last_and_strided_views():
    base = torch.randn(2, 3, 7, 10, device=DEVICE)
    x = base[:, :, :, ::2].contiguous(memory_format=torch.channels_last)[:, :, 1:]  # odd strides
    wt = torch.randn(4, 3, 3, 2, device=DEVICE).transpose(2, 3).contiguous().transpose(2, 3)
    assert not x.is_contiguous() and not wt.is_contiguous()
    args = ((1, 2), (1, 1), (1, 1), 1)
    g_out = torch.randn(2, 4, 6, 3, device=DEVICE)  # the output shape for these arguments
    got = run_triton(x, wt, g_out, *args)
    want = direct(x, wt, g_out, *args)
    for a, b, what in zip(got, want, ("output", "grad_input", "grad_weight")):
        assert_near(a, b, 1e-4, what)


def test_empty_batch():
    x = torch.randn(0, 4, 5, 5, device=DEVICE, requires_grad=True)
    wt = torch.randn(6, 2, 3, 3, device=DEVICE, requires_grad=True)
    y = tb.adder_conv2d(x, wt, (1, 1), (1, 1), (1, 1), 2)
    assert y.shape == (0, 6, 5, 5)
    gx, gw = torch.autograd.grad(y.sum(), (x, wt))
    assert gx.shape == x.shape and gw.shape == wt.shape
    assert not gw.any()


def test_split_weight_reduction(monkeypatch):
    # Force several partial sums over N*OH*OW, as large batches get on a GPU.
    monkeypatch.setattr(tb, "_MIN_P_PER_SPLIT", 20)
    conf = CONFIGS["3x3-pad1"]
    x, wt, g_out = make(*conf)
    assert tb._weight_grad_splits(2 * 7 * 6, 4, 27) > 1
    _, gw = torch.ops.addernet.triton_adder_conv2d_backward(
        g_out, x, wt, [1, 1], [1, 1], [1, 1], 1, [False, True]
    )
    assert_near(gw, direct(x, wt, g_out, (1, 1), (1, 1), (1, 1), 1)[2], 1e-4, "grad_weight")


def test_backward_output_mask():
    x, wt, g_out = make(*CONFIGS["3x3-pad1"])
    gx, gw = torch.ops.addernet.triton_adder_conv2d_backward(
        g_out, x, wt, [1, 1], [1, 1], [1, 1], 1, [True, False]
    )
    assert gx.shape == x.shape and gw.shape == (0,)


def test_weight_grad_via_convolution_agrees():
    conf = CONFIGS["stride2-pad-groups2-2x3"]
    x, wt, g_out = make(*conf)
    gw = tb.weight_grad_via_convolution(g_out, x, wt, (2, 2), (1, 2), (1, 1), 2)
    assert_near(gw, direct(x, wt, g_out, (2, 2), (1, 2), (1, 1), 2)[2], 1e-4, "grad_weight")


def test_opcheck():
    x = torch.randn(2, 2, 4, 5, device=DEVICE, requires_grad=True)
    wt = torch.randn(3, 2, 2, 2, device=DEVICE, requires_grad=True)
    utils = ("test_schema", "test_faketensor", "test_autograd_registration")
    torch.library.opcheck(
        torch.ops.addernet.triton_adder_conv2d, (x, wt, [1, 1], [1, 0], [1, 1], 1), test_utils=utils
    )
    g_out = torch.randn(2, 3, 5, 4, device=DEVICE)
    torch.library.opcheck(
        torch.ops.addernet.triton_adder_conv2d_backward,
        (g_out, x.detach(), wt.detach(), [1, 1], [1, 0], [1, 1], 1, [True, True]),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_opcheck_aot_dispatch():
    # The graph torch.compile's AOTDispatcher traces must compute what eager does.
    x = torch.randn(1, 2, 3, 4, device=DEVICE, requires_grad=True)
    wt = torch.randn(2, 2, 2, 2, device=DEVICE, requires_grad=True)
    torch.library.opcheck(
        torch.ops.addernet.triton_adder_conv2d,
        (x, wt, [1, 1], [1, 0], [1, 1], 1),
        test_utils=("test_aot_dispatch_dynamic",),
    )


def test_fallback_custom_op_fake_skips_kernels():
    # The torch<2.6 path (custom_op + fake); defined under a throwaway namespace.
    op = tb._define("addernet_triton_test::fwd", tb._forward, use_triton_op=False)
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    wt = torch.randn(3, 2, 3, 3, device=DEVICE)
    args = (x, wt, [1, 1], [1, 1], [1, 1], 1)
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))
    want = direct(x, wt, torch.zeros(1, 3, 4, 4, device=DEVICE), (1, 1), (1, 1), (1, 1), 1)[0]
    assert_near(op(*args), want, 1e-4, "output")


def test_32bit_index_overflow_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(tb, "INDEX_LIMIT", 100)
    x = torch.randn(1, 2, 8, 8, device=DEVICE)  # 128 elements: "too big" under the patched limit
    wt = torch.randn(1, 2, 1, 1, device=DEVICE)
    with pytest.raises(ValueError, match=r"input has 128 elements.*32-bit"):
        tb.adder_conv2d(x, wt, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="grad_output"):
        tb.check_index_range(grad_output=2**31)


def test_float64_is_refused():
    x = torch.randn(1, 2, 4, 4, device=DEVICE, dtype=torch.float64)
    wt = torch.randn(3, 2, 3, 3, device=DEVICE, dtype=torch.float64)
    with pytest.raises(TypeError, match="float32, float16 and bfloat16"):
        tb.adder_conv2d(x, wt, (1, 1), (1, 1), (1, 1), 1)


def test_bad_grad_output_shape():
    x, wt, g_out = make(*CONFIGS["3x3-pad1"])
    with pytest.raises(ValueError, match="grad_output has shape"):
        torch.ops.addernet.triton_adder_conv2d_backward(
            g_out[:, :, 1:], x, wt, [1, 1], [1, 1], [1, 1], 1, [True, True]
        )


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setattr(tk, "INTERPRET", False)
    x, wt = torch.randn(1, 2, 4, 4), torch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        tb.adder_conv2d(x, wt, (1, 1), (1, 1), (1, 1), 1)


def test_status(monkeypatch):
    assert tb.status() == (True, "")
    assert "triton" in backends.available()
    monkeypatch.setattr(tk, "INTERPRET", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    ok, why = tb.status()
    assert not ok and "no CUDA GPU" in why and "TRITON_INTERPRET=1" in why
    assert "triton" not in backends.available()


def test_functional_with_bias_and_backend_argument():
    x = torch.randn(2, 3, 5, 6, device=DEVICE, requires_grad=True)
    wt = torch.randn(4, 3, 3, 3, device=DEVICE, requires_grad=True)
    b = torch.randn(4, device=DEVICE, requires_grad=True)
    y = addernet.functional.adder_conv2d(x, wt, b, stride=1, padding=1, backend="triton")
    g_out = torch.randn_like(y)
    grads = torch.autograd.grad(y, (x, wt, b), g_out)
    y0, gx0, gw0 = direct(x.detach(), wt.detach(), g_out, (1, 1), (1, 1), (1, 1), 1)
    assert_near(y, y0 + b.detach().double().view(1, -1, 1, 1).cpu(), 1e-4, "output")
    assert_near(grads[0], gx0, 1e-4, "grad_input")
    assert_near(grads[1], gw0, 1e-4, "grad_weight")
    assert_near(grads[2], g_out.double().sum((0, 2, 3)), 1e-4, "grad_bias")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of triton ops needs a GPU")
def test_torch_compile_fullgraph():
    x = torch.randn(2, 3, 8, 8, device=DEVICE)
    wt = torch.randn(4, 3, 3, 3, device=DEVICE)
    f = torch.compile(lambda a, b: tb.adder_conv2d(a, b, (1, 1), (1, 1), (1, 1), 1), fullgraph=True)
    want = direct(x, wt, torch.zeros(2, 4, 8, 8, device=DEVICE), (1, 1), (1, 1), (1, 1), 1)[0]
    assert_near(f(x, wt), want, 1e-4, "output")
