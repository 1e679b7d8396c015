"""ADA's augmentation pipeline and DiffAugment (hifigan/nn/augment.py, hifigan/nn/diffaugment.py)."""
from __future__ import annotations

import math

import pytest
import torch

from hifigan.nn import augment as A
from hifigan.nn import diffaugment as D
from hifigan.nn.augment import AUGMENT_POLICIES, AdaAugment, DiffAugment, NoAugment

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions on a shared, loaded machine: one thread avoids OpenMP waits (50 ms a call instead of 0.05)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


GEOM = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
ALL = GEOM + COLOR + ("imgfilter", "noise", "cutout")


class Rand:
    """A Randomness over a torch.Generator that records the kinds and dims of its draws."""

    def __init__(self, n, seed=0, dtype=torch.float32):
        self.size, self.g, self.dtype, self.log = n, torch.Generator().manual_seed(seed), dtype, []

    def rand(self, *dims):
        self.log.append(("rand", dims))
        return torch.rand(self.size, *dims, generator=self.g, dtype=self.dtype)

    def randn(self, *dims):
        self.log.append(("randn", dims))
        return torch.randn(self.size, *dims, generator=self.g, dtype=self.dtype)

    def randint(self, high):
        self.log.append(("randint", (high,)))
        return torch.randint(high, (self.size,), generator=self.g)


class Fixed(Rand):
    """Chosen draws: every gate open (uniform 0), other uniforms 0.5 (a symmetric range's midpoint), normals 0,
    overridden per column name by `u` / `z` (a number or a [n] tensor); per-pixel noise from the generator."""

    def __init__(self, n, u=None, z=None):
        super().__init__(n)
        self.u, self.z = u or {}, z or {}

    def rand(self, *dims):
        if dims != (len(A._UNIFORM),):
            return super().rand(*dims)
        out = torch.full((self.size, len(A._UNIFORM)), 0.5)
        out[:, :len(A._GATES)] = 0
        for k, v in self.u.items():
            out[:, A._U[k]] = torch.as_tensor(v, dtype=torch.float32)
        return out

    def randn(self, *dims):
        if dims != (len(A._NORMAL),):
            return super().randn(*dims)
        out = torch.zeros(self.size, len(A._NORMAL))
        for k, v in self.z.items():
            out[:, A._Z[k]] = torch.as_tensor(v, dtype=torch.float32)
        return out


def only(*names, p=1.0, **kw):
    """A pipe with only the named transforms enabled, at probability p."""
    cfg = AdaAugment.Config(**{k: (1.0 if k in names else 0.0) for k in ALL}, **kw)
    pipe = AdaAugment(cfg)
    pipe.p.fill_(p)
    return pipe


def blob(n=1, C=1, H=32, W=32, cx=0.0, cy=0.0, s=3.0, dtype=torch.float32):
    """A Gaussian blob of std s centered at (cx, cy) (centered pixel units)."""
    y = torch.arange(H, dtype=torch.float64) + 0.5 - H / 2
    x = torch.arange(W, dtype=torch.float64) + 0.5 - W / 2
    img = torch.exp(-((x[None] - cx) ** 2 + (y[:, None] - cy) ** 2) / (2 * s * s))
    return img.to(dtype).expand(n, C, H, W).clone()


def smooth(n, C, H, W, seed=0):
    """Band-limited random images around 0 (random noise blurred by a Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, C, H, W, generator=g)
    k = torch.exp(-torch.arange(-4, 5.0) ** 2 / 4)
    k = (k / k.sum())
    x = torch.nn.functional.conv2d(x.reshape(-1, 1, H, W), k.view(1, 1, 1, -1), padding=(0, 4))
    x = torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1), padding=(4, 0))
    return (x / x.std()).reshape(n, C, H, W) * 0.4


def moments(img):
    """Centroid and second moment (about the centroid) of each [H, W] image, centered pixel units."""
    H, W = img.shape[-2:]
    y = torch.arange(H, dtype=img.dtype) + 0.5 - H / 2
    x = torch.arange(W, dtype=img.dtype) + 0.5 - W / 2
    m = img.sum((-1, -2))
    cx, cy = (img * x).sum((-1, -2)) / m, (img * y[:, None]).sum((-1, -2)) / m
    r2 = (x - cx[..., None, None]) ** 2 + (y[:, None] - cy[..., None, None]) ** 2
    return cx, cy, (img * r2).sum((-1, -2)) / m


# ----------------------------------------------------------------------------------------------
# Constants and building blocks

def test_sym6_is_an_orthonormal_wavelet_with_six_vanishing_moments():
    h = torch.tensor(A.SYM6, dtype=torch.float64)
    assert abs(h.sum() - math.sqrt(2)) < 1e-12 and abs(h.square().sum() - 1) < 1e-11
    for k in range(1, 6):
        assert abs((h[:-2 * k] * h[2 * k:]).sum()) < 1e-11  # orthogonal to its even shifts
    g = h.flip(0) * (-1) ** torch.arange(12)  # the high-pass
    for m in range(6):
        assert abs((g * torch.arange(12.0, dtype=torch.float64) ** m).sum()) < 1e-6 * 12 ** m


def test_band_filters_split_the_spectrum_and_sum_to_an_impulse():
    fb = A.band_filters().double()
    taps = fb.shape[1]
    impulse = torch.zeros(taps, dtype=torch.float64)
    impulse[taps // 2] = 1
    assert torch.allclose(fb.sum(0), impulse, atol=1e-6)
    k = torch.arange(taps, dtype=torch.float64) - taps // 2
    resp = lambda w: (fb * torch.cos(w * k)).sum(1)  # zero-phase: real responses
    assert torch.allclose(resp(0.0), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(resp(math.pi), torch.tensor([0.0, 0, 0, 1], dtype=torch.float64), atol=1e-6)
    for b, w in enumerate((math.pi / 16, 3 * math.pi / 16, 3 * math.pi / 8, 3 * math.pi / 4)):
        assert resp(w).argmax() == b  # each band dominates at its own center


def test_resample_with_identity_is_exact_and_integer_matrices_match_the_blit():
    x = torch.randn(2, 3, 24, 32, dtype=torch.float64)  # large enough that the reflection cap is not reached
    f = torch.tensor(A.SYM6, dtype=torch.float64) / sum(A.SYM6)
    eye = torch.eye(3, dtype=torch.float64).expand(2, 3, 3)
    assert (A.resample(x, eye, f) - x).abs().max() < 1e-10  # 2x up then down with sym6: perfect reconstruction
    shift = torch.tensor([[1, 0, 3.0], [0, 1, -2], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    assert (A.resample(x, shift, f) - A.blit(x, shift)).abs().max() < 1e-10
    quarter = torch.tensor([[0, -1, 0.0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64)[None]
    s = blob(1, 1, 32, 32, cx=5, cy=-3, dtype=torch.float64)
    assert (A.resample(s, quarter, f) - A.blit(s, quarter)).abs().max() < 5e-3  # sym6 is only nearly symmetric
    assert torch.equal(A.blit(s, quarter), torch.rot90(s, 1, (2, 3)))


# ----------------------------------------------------------------------------------------------
# Identity and the draws

def test_p0_returns_the_input_bitwise():
    pipe = AdaAugment(AdaAugment.Config(noise=1.0, cutout=1.0, imgfilter=1.0))
    x = torch.randn(4, 3, 16, 16)
    assert pipe(x, Rand(4)) is x
    assert float(pipe.p) == 0 and pipe.p.dtype == torch.float32 and pipe.p.ndim == 0


def test_no_transform_drawn_returns_the_input_bitwise():
    pipe = AdaAugment(AdaAugment.Config(**{k: 0.0 for k in ALL}))
    pipe.p.fill_(1.0)
    x = torch.randn(4, 3, 16, 16)
    assert torch.equal(pipe(x, Rand(4)), x)
    pipe = only(*ALL, p=0.5)  # every gate closed: uniforms 0.99 > p
    y = pipe(x, Fixed(4, u={k: 0.99 for k in A._GATES}))
    assert torch.equal(y, x)


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_draw_sequence_is_independent_of_p(noise):
    logs = []
    for p in (0.0, 0.3, 1.0):
        pipe = AdaAugment(AdaAugment.Config(noise=noise, cutout=1.0, imgfilter=1.0))
        pipe.p.fill_(p)
        r = Rand(3, seed=1)
        pipe(torch.randn(3, 3, 16, 16), r)
        logs.append(r.log)
    assert logs[0] == logs[1] == logs[2]
    assert logs[0][:2] == [("rand", (len(A._UNIFORM),)), ("randn", (len(A._NORMAL),))]
    assert (("randn", (3, 16, 16)) in logs[0]) == bool(noise)


def test_same_draws_give_the_same_output():
    pipe = AdaAugment(AdaAugment.Config(noise=1.0, cutout=1.0, imgfilter=1.0))
    pipe.p.fill_(0.7)
    x = torch.randn(6, 3, 16, 16)
    a, b, c = pipe(x, Rand(6, seed=3)), pipe(x, Rand(6, seed=3)), pipe(x, Rand(6, seed=4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_randomness_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="4 samples but images has 3"):
        AdaAugment()(torch.zeros(3, 1, 8, 8), Rand(4))


# ----------------------------------------------------------------------------------------------
# Geometric transforms, each alone at p = 1

def test_xflip_flips_or_keeps_each_sample():
    x = torch.randn(16, 3, 8, 10)
    y = only("xflip")(x, Rand(16))
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(16)]
    kept = [torch.equal(y[i], x[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_rotate90_rotates_each_sample_by_a_quarter_turn_multiple():
    x = torch.randn(16, 2, 8, 8)
    y = only("rotate90")(x, Rand(16))
    ks = [[k for k in range(4) if torch.equal(y[i], torch.rot90(x[i], k, (1, 2)))] for i in range(16)]
    assert all(len(k) == 1 for k in ks) and len({k[0] for k in ks}) == 4


def test_integer_translation_shifts_each_sample_in_the_interior():
    H = W = 16
    x = torch.randn(12, 1, H, W)
    y = only("xint")(x, Rand(12))
    m = 2  # at most round(0.125 * 16) = 2 pixels
    moved = 0
    for i in range(12):
        hits = [(tx, ty) for tx in range(-m, m + 1) for ty in range(-m, m + 1)
                if torch.equal(y[i, :, m:H - m, m:W - m], x[i, :, m - ty:H - m - ty, m - tx:W - m - tx])]
        assert len(hits) == 1
        moved += hits[0] != (0, 0)
    assert moved >= 6


@pytest.mark.parametrize("zs", [-1.5, 1.0])
def test_isotropic_scale_changes_the_second_moment_by_s_squared(zs):
    x = blob(1, 1, 48, 48, s=4.0, dtype=torch.float64)
    pipe = only("scale")
    y = pipe(x, Fixed(1, z={"scale": zs}))
    s = 2 ** (zs * pipe.cfg.scale_std)
    # (bilinear sampling on the 2x grid adds about 2 * (1/2)^2 / 6 = 0.08 px^2: 0.4% here)
    assert moments(y)[2].item() == pytest.approx(moments(x)[2].item() * s * s, rel=0.01)


def test_rotation_moves_the_centroid_and_its_inverse_restores_the_image():
    x = blob(1, 1, 40, 40, cx=6.0, cy=0.0, s=2.5, dtype=torch.float64) + blob(1, 1, 40, 40, cx=-2, cy=4, s=2, dtype=torch.float64)
    theta = 0.3 * math.pi
    pipe = only("rotate", rotate_max=1.0)
    draws = dict(u={"rotate_pre_v": (theta / math.pi + 1) / 2, "rotate_post": 0.999})  # pre-rotation only
    y = pipe(x, Fixed(1, **draws))
    cx, cy, _ = moments(x)
    ry = moments(y)
    assert ry[0].item() == pytest.approx((cx * math.cos(theta) - cy * math.sin(theta)).item(), abs=0.05)
    assert ry[1].item() == pytest.approx((cx * math.sin(theta) + cy * math.cos(theta)).item(), abs=0.05)
    G, _, _ = pipe.geometric(A._Draws(Fixed(1, **draws), "cpu"), pipe.p, 40, 40)
    f = torch.tensor(A.SYM6, dtype=torch.float64) / sum(A.SYM6)
    back = A.resample(y, torch.linalg.inv(G.double()), f)
    assert (y - x).abs().max() > 0.5
    assert (back - x)[..., 8:-8, 8:-8].abs().max() < 0.02


def test_geometric_transforms_keep_a_constant_image_constant():
    """No empty area and no darkening at the borders: reflection padding everywhere."""
    pipe = only(*GEOM, xint_max=0.5, scale_std=1.0)
    x = torch.full((32, 1, 16, 16), 0.7)
    y = pipe(x, Rand(32, seed=2))
    assert (y - 0.7).abs().max() < 1e-4


def test_mean_and_std_survive_p1_augmentation():
    x = smooth(64, 3, 32, 32) + 0.2
    pipe = only(*GEOM)
    y = pipe(x, Rand(64, seed=5))
    assert y.mean().item() == pytest.approx(x.mean().item(), abs=0.01)
    assert y.std().item() == pytest.approx(x.std().item(), rel=0.05)
    border = torch.cat([y[..., :2, :].flatten(), y[..., -2:, :].flatten()])
    assert border.mean().item() == pytest.approx(0.2, abs=0.03)


# ----------------------------------------------------------------------------------------------
# Color transforms

def test_brightness_adds_a_constant_per_sample():
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    pipe = only("brightness")
    y = pipe(x, Fixed(8, z={"brightness": torch.linspace(-2, 2, 8)}))
    b = (y - x).flatten(1)
    assert torch.allclose(b, b[:, :1].expand_as(b), atol=1e-6)
    assert torch.allclose(b[:, 0], torch.linspace(-2, 2, 8) * pipe.cfg.brightness_std, atol=1e-6)


@pytest.mark.parametrize("C", [1, 3])
def test_contrast_scales_deviations_from_mid_gray(C):
    x = torch.rand(4, C, 8, 8) * 2 - 1
    y = only("contrast")(x, Fixed(4, z={"contrast": torch.tensor([-1.0, 0.5, 1.0, 2.0])}))
    c = 2 ** (torch.tensor([-1.0, 0.5, 1.0, 2.0]) * 0.5)
    assert torch.allclose(y, x * c[:, None, None, None], atol=1e-6)


@pytest.mark.parametrize("C", [1, 3])
def test_luma_flip_twice_is_the_identity(C):
    x = torch.rand(8, C, 8, 8) * 2 - 1
    pipe = only("lumaflip")
    once = pipe(x, Fixed(8, u={"lumaflip_v": 0.9}))
    assert (once - x).abs().max() > 0.1
    assert torch.allclose(pipe(once, Fixed(8, u={"lumaflip_v": 0.9})), x, atol=1e-6)
    if C == 1:
        assert torch.allclose(once, -x, atol=1e-6)  # gray: the luma axis itself is reflected
    else:
        luma = lambda t: t.mean(1)
        assert torch.allclose(luma(once), -luma(x), atol=1e-6)
        assert torch.allclose(once - luma(once)[:, None], x - luma(x)[:, None], atol=1e-6)  # chroma kept


def test_hue_rotation_preserves_luma_and_a_full_turn_is_the_identity():
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    pipe = only("hue")
    y = pipe(x, Fixed(8, u={"hue_v": 0.8}))  # 0.6 pi
    assert (y - x).abs().max() > 0.1
    assert torch.allclose(y.mean(1), x.mean(1), atol=1e-6)
    v = torch.tensor([1, 1, 1, 0.0]) / math.sqrt(3)
    M = A._rotate_about(v, torch.full([8], 2 * math.pi))
    assert torch.allclose(A.apply_color(x, M), x, atol=1e-5)
    gray = x[:, :1]
    assert torch.allclose(pipe(gray, Fixed(8, u={"hue_v": 0.8})), gray, atol=1e-6)  # one channel: identity


def test_saturation_zero_gives_gray_and_is_identity_on_one_channel():
    x = torch.rand(4, 3, 8, 8) * 2 - 1
    pipe = only("saturation")
    y = pipe(x, Fixed(4, z={"saturation": -60.0}))
    assert torch.allclose(y, x.mean(1, keepdim=True).expand_as(x), atol=1e-6)
    gray = x[:, :1]
    assert torch.allclose(pipe(gray, Fixed(4, z={"saturation": 1.5})), gray, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Image-space stages

def test_imgfilter_with_equal_gains_is_the_identity_and_unequal_gains_change_the_spectrum():
    x = torch.randn(2, 3, 16, 16)
    pipe = only("imgfilter")
    same = pipe(x, Fixed(2, z={f"band{i}": 0.0 for i in range(4)}))
    assert torch.allclose(same, x, atol=1e-5)
    sharp = pipe(x, Fixed(2, z={"band3": 2.0}))  # the top band 4x louder, then renormalized
    hi = lambda t: (t[..., 1:] - t[..., :-1]).square().mean()
    assert hi(sharp) > 2 * hi(x)


def test_noise_adds_gaussian_noise_of_the_drawn_std():
    x = torch.zeros(2, 3, 64, 64)
    y = only("noise")(x, Fixed(2, z={"noise": torch.tensor([1.0, -3.0])}))
    assert y[0].std().item() == pytest.approx(0.1, rel=0.05)
    assert y[1].std().item() == pytest.approx(0.3, rel=0.05)


def test_cutout_zeroes_a_square_of_the_configured_size():
    x = torch.ones(1, 3, 16, 16)
    y = only("cutout")(x, Fixed(1, u={"cutout_x": 0.5, "cutout_y": 0.25}))
    assert torch.equal(y[0, 0, 0:8, 4:12], torch.zeros(8, 8))
    assert (y == 0).sum().item() == 3 * 64


# ----------------------------------------------------------------------------------------------
# Gradients (R1 differentiates D(aug(x)) w.r.t. x and backpropagates through that gradient)

def test_grid_sample_is_twice_differentiable_in_its_input():
    x = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    grid = torch.rand(1, 3, 6, 2, dtype=torch.float64) * 2.4 - 1.2
    assert torch.autograd.gradcheck(lambda t: A.grid_sample(t, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda t: A.grid_sample(t, grid), (x,))


def test_pipeline_gradcheck_and_gradgradcheck():
    pipe = AdaAugment(AdaAugment.Config(noise=1.0, cutout=1.0, imgfilter=1.0)).double()
    pipe.p.fill_(0.8)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda t: pipe(t, Rand(2, seed=11, dtype=torch.float64))
    flags = [pipe.geometric(A._Draws(Rand(2, seed=11), "cpu"), pipe.p, 6, 6)[1].any(),
             pipe.color(A._Draws(Rand(2, seed=11), "cpu"), pipe.p)[1].any()]
    assert all(flags)  # the draws resample and recolor at least one sample
    assert (fn(x) - x).abs().max() > 0.1
    # fast_mode: checks random projections of the Jacobians (the full ones take minutes on CPU)
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


def test_r1_through_the_pipeline_reaches_the_discriminator():
    pipe = AdaAugment()
    pipe.p.fill_(1.0)
    w = torch.randn(3, 16, 16, requires_grad=True)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    logits = (pipe(x, Rand(4)).tanh() * w).sum((1, 2, 3))
    g, = torch.autograd.grad(logits.sum(), x, create_graph=True)
    g.square().sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# DiffAugment and the registry

def test_diffaugment_color_midpoint_draws_are_identity_and_saturation_zero_is_gray():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.allclose(D.color(x, torch.full((2, 3), 0.5)), x, atol=1e-6)
    gray = D.color(x, torch.tensor([[0.5, 0.0, 0.5]] * 2))
    assert torch.allclose(gray, x.mean(1, keepdim=True).expand_as(x), atol=1e-6)
    bright = D.color(x, torch.tensor([[0.9, 0.5, 0.5]] * 2))
    assert torch.allclose(bright, x + 0.4, atol=1e-6)


def test_diffaugment_translation_shifts_with_zeros():
    x = torch.randn(1, 2, 16, 16)
    y = D.translation(x, torch.tensor([[0.99, 0.0]]), 0.125)  # tx = +2, ty = -2
    assert torch.equal(y[..., 2:, :14], x[..., :14, 2:])
    assert (y[..., :2, :] == 0).all() and (y[..., :, 14:] == 0).all()


def test_diffaugment_cutout_zeroes_a_half_size_square():
    x = torch.ones(3, 1, 16, 16)
    y = D.cutout(x, torch.tensor([[0.5, 0.5], [0.0, 0.0], [0.99, 0.3]]), 0.5)
    assert (y[0] == 0).sum() == 64 and torch.equal(y[0, 0, 4:12, 4:12], torch.zeros(8, 8))
    assert (y[1] == 0).sum() == 16  # clipped at the corner


def test_diffaugment_applies_its_policy_always_with_one_draw():
    pipe = DiffAugment(DiffAugment.Config(policy="color,translation,cutout"))
    r = Rand(4)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = pipe(x, r)
    assert r.log == [("rand", (7,))] and float(pipe.p) == 1.0
    u = Rand(4).rand(7)
    expect = D.cutout(D.translation(D.color(x, u[:, 0:3]), u[:, 3:5], 0.125), u[:, 5:7], 0.5)
    assert torch.equal(y, expect) and (y == 0).any()
    only_cut = DiffAugment(DiffAugment.Config(policy="cutout"))(x, Rand(4))
    assert torch.equal(only_cut, D.cutout(x, u[:, 5:7], 0.5))
    assert torch.autograd.gradgradcheck(lambda t: pipe(t, Rand(2, dtype=torch.float64)),
                                        (torch.randn(2, 1, 4, 4, dtype=torch.float64, requires_grad=True),))
    with pytest.raises(ValueError, match="unknown op 'colour'"):
        DiffAugment.Config(policy="colour,cutout")


def test_policies_share_the_interface():
    assert set(AUGMENT_POLICIES) == {"none", "ada", "diffaugment"}
    x = torch.randn(2, 1, 8, 8)
    for cls in AUGMENT_POLICIES.values():
        pipe = cls(cls.Config())
        assert pipe.p.ndim == 0 and pipe.p.dtype == torch.float32
        assert pipe(x, Rand(2)).shape == x.shape
    assert NoAugment()(x, Rand(2)) is x
