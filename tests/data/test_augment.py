"""addernet.data.augment: batched, seeded tensor augmentations keep shape, dtype and range."""
import pytest
import torch

from addernet.data import augment as A

DTYPES = [torch.float32, torch.float64, torch.bfloat16]
RANDOM = {
    "color_jitter": lambda x, g: A.color_jitter(x, 0.5, 0.5, 0.5, generator=g),
    "random_resized_crop": lambda x, g: A.random_resized_crop(x, generator=g),
    "scale_aspect": lambda x, g: A.scale_aspect(x, generator=g),
    "scale_aspect_border": lambda x, g: A.scale_aspect(x, (0.5, 2.0), generator=g, fill="border"),
    "hflip": lambda x, g: A.hflip(x, generator=g),
}
FIXED = {
    "rot90": lambda x: A.rot90(x, 1),
    "rot90_each": lambda x: A.rot90(x, torch.arange(x.shape[0]) % 4),
    "grayscale": A.grayscale,
}


def images(channels, dtype=torch.float32, n=16, size=12, device="cpu"):
    torch.manual_seed(channels)
    return torch.rand(n, channels, size, size, device=device).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(RANDOM) + sorted(FIXED))
def test_shape_dtype_range(name, channels, dtype):
    x = images(channels, dtype)
    g = torch.Generator().manual_seed(0)
    y = RANDOM[name](x, g) if name in RANDOM else FIXED[name](x)
    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
    assert y.min() >= 0 and y.max() <= 1
    # Extreme inputs stay in range too (all black, all white).
    for const in (torch.zeros_like(x), torch.ones_like(x)):
        z = RANDOM[name](const, g) if name in RANDOM else FIXED[name](const)
        assert z.min() >= 0 and z.max() <= 1


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_seeded_generators_reproduce(name):
    x = images(3)
    run = lambda seed: RANDOM[name](x, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))
    # Per image: the images of one batch get different draws.
    same = images(3)[:1].expand(16, -1, -1, -1).contiguous()
    out = RANDOM[name](same, torch.Generator().manual_seed(1))
    assert len({tuple(o.flatten()[:50].tolist()) for o in out}) > 1


def test_rot90():
    x = images(3)
    torch.testing.assert_close(A.rot90(x, 4), x)
    torch.testing.assert_close(A.rot90(A.rot90(x, 1), 3), x)
    assert torch.equal(A.rot90(x, 1)[0, 0, 0, -1], x[0, 0, -1, -1])  # counter-clockwise
    k = torch.tensor([0, 1, 2, 3] * 4)
    each = A.rot90(x, k)
    for i in range(16):
        assert torch.equal(each[i], torch.rot90(x[i], int(k[i]), (-2, -1)))
    with pytest.raises(ValueError, match="square"):
        A.rot90(torch.rand(2, 1, 3, 4), [0, 1])
    with pytest.raises(ValueError, match="3 rotations for 16 images"):
        A.rot90(x, [1, 2, 3])


def test_hflip_probability_extremes():
    x = images(3)
    assert torch.equal(A.hflip(x, p=1.0), x.flip(-1))
    assert torch.equal(A.hflip(x, p=0.0), x)
    flips = A.hflip(images(1, n=4000, size=2), p=0.3, generator=torch.Generator().manual_seed(0))
    rate = (flips != images(1, n=4000, size=2)).flatten(1).any(1).float().mean().item()
    assert abs(rate - 0.3) < 4 * (0.3 * 0.7 / 4000) ** 0.5


def test_grayscale():
    x = images(3)
    g = A.grayscale(x)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    torch.testing.assert_close(A.grayscale(g), g)
    one = images(1)
    assert torch.equal(A.grayscale(one), one)  # documented: the identity on one channel
    with pytest.raises(ValueError, match="1 or 3 channels"):
        A.grayscale(torch.rand(2, 2, 4, 4))


def test_color_jitter_amounts():
    x = images(3)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(A.color_jitter(x, 0, 0, 0, generator=g()), x)
    # Saturation alone keeps each pixel's luma (up to clamping) and is the identity on one channel.
    sat = A.color_jitter(x * 0.5 + 0.25, 0, 0, 0.5, generator=g())
    torch.testing.assert_close(A.grayscale(sat), A.grayscale(x * 0.5 + 0.25), atol=1e-5, rtol=0)
    one = images(1)
    torch.testing.assert_close(A.color_jitter(one, 0, 0, 0.9, generator=g()), one)
    # Contrast alone keeps the mean of a mid-range image and changes its spread.
    mid = x * 0.2 + 0.4
    con = A.color_jitter(mid, 0, 0.5, 0, generator=g())
    torch.testing.assert_close(A.grayscale(con)[:, 0].mean((1, 2)), A.grayscale(mid)[:, 0].mean((1, 2)))
    assert not torch.allclose(con.std((1, 2, 3)), mid.std((1, 2, 3)))
    # Brightness alone scales (no clamp reached below 1 / 1.5).
    bri = A.color_jitter(mid, 0.5, 0, 0, generator=g())
    ratio = bri / mid
    torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio))
    with pytest.raises(ValueError, match=">= 0"):
        A.color_jitter(x, brightness=-0.1)


def test_random_resized_crop_geometry():
    x = images(3, size=16)
    full = A.random_resized_crop(x, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(full, x)  # the whole image at its own size: unchanged
    y = A.random_resized_crop(x, 8, generator=torch.Generator().manual_seed(0))
    assert y.shape == (16, 3, 8, 8)
    assert A.random_resized_crop(x, (6, 10)).shape == (16, 3, 6, 10)
    # A crop of a constant-per-quadrant image stays within the image's values.
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(4, 1, 16, 16).contiguous()
    small = A.random_resized_crop(ramp, scale=(0.05, 0.1), generator=torch.Generator().manual_seed(3))
    # A small crop of a horizontal ramp spans a narrow range of it.
    assert (small.amax((1, 2, 3)) - small.amin((1, 2, 3)) < 0.7).all()


def test_scale_aspect_geometry():
    x = images(1, size=16)
    same = A.scale_aspect(x, (1.0, 1.0), (1.0, 1.0))
    torch.testing.assert_close(same, x)
    shrunk = A.scale_aspect(torch.ones(2, 1, 16, 16), (0.5, 0.5), (1.0, 1.0))
    assert shrunk[:, :, 0, 0].eq(0).all() and shrunk[:, :, 8, 8].eq(1).all()  # zero border, content centred
    border = A.scale_aspect(torch.ones(2, 1, 16, 16), (0.5, 0.5), (1.0, 1.0), fill="border")
    assert border.eq(1).all()
    # Zoom 2x: the output's centre 8x8 pixels come from the input's centre 4x4.
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous()
    zoom = A.scale_aspect(ramp, (2.0, 2.0), (1.0, 1.0))
    assert zoom.min() >= ramp[..., 3].min() and zoom.max() <= ramp[..., 12].max()
    # Aspect > 1 widens the content: a wide ratio with zeros fill leaves top/bottom borders.
    wide = A.scale_aspect(torch.ones(1, 1, 16, 16), (1.0, 1.0), (4.0, 4.0))
    assert wide[0, 0, 0].eq(0).all() and wide[0, 0, 8].eq(1).all()
    with pytest.raises(ValueError, match="fill"):
        A.scale_aspect(x, fill="reflect")


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        A.hflip(torch.rand(3, 4, 4))
    with pytest.raises(TypeError, match="floating"):
        A.hflip(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", sorted(RANDOM))
def test_cpu_generator_gives_the_same_augmentation_on_gpu(name):
    x = images(3)
    cpu = RANDOM[name](x, torch.Generator().manual_seed(4))
    gpu = RANDOM[name](x.cuda(), torch.Generator().manual_seed(4))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)
    # And a CUDA generator works on CUDA tensors.
    y = RANDOM[name](x.cuda(), torch.Generator(device="cuda").manual_seed(4))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
