"""The defining math of the shared layers in hifigan/nn, each checked against a direct computation.

Modulated convolution with demodulation and FIR resampling: StyleGAN2 (Karras et al. 2020,
arXiv:1912.04958); equalized learning rate, pixel norm and minibatch stddev: ProGAN (Karras et al.
2018, arXiv:1710.10196); AdaIN: Huang & Belongie 2017 (arXiv:1703.06868).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hifigan.nn.activation import bias_act
from hifigan.nn.equalized import EqualConv2d, EqualLinear
from hifigan.nn.fir import conv2d_resample, downsample2d, setup_filter, upfirdn2d, upsample2d
from hifigan.nn.mbstd import MinibatchStd, group_size_for, minibatch_std
from hifigan.nn.modconv import ModulatedConv2d, demod_coefficients, modulated_conv2d
from hifigan.nn.norms import adain, pixel_norm

DT = torch.float64  # the identities are exact; float64 keeps the tolerances tight


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ----------------------------------------------------------------------------------------------
# modulated convolution

def test_demodulation_gives_unit_norm_output_filters():
    w = torch.randn(6, 4, 3, 3, dtype=DT)
    s = torch.randn(5, 4, dtype=DT)
    wi = w[None] * s[:, None, :, None, None]                        # [N, O, I, k, k] per-sample weights
    wi = wi * demod_coefficients(w, s)[:, :, None, None, None]
    assert torch.allclose(wi.square().sum([2, 3, 4]), torch.ones(5, 6, dtype=DT), atol=1e-6)


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modconv_fused_equals_not_fused(up, down, demodulate):
    x = torch.randn(3, 4, 8, 8, dtype=DT)
    w = torch.randn(5, 4, 3, 3, dtype=DT)
    s = torch.randn(3, 4, dtype=DT)
    f = setup_filter().to(DT)
    a = modulated_conv2d(x, w, s, demodulate, up, down, f, fused=True)
    b = modulated_conv2d(x, w, s, demodulate, up, down, f, fused=False)
    assert a.shape == (3, 5, 8 * up // down, 8 * up // down)
    assert torch.allclose(a, b, atol=1e-10)


def test_modconv_equals_per_sample_convolution():
    x = torch.randn(3, 4, 8, 8, dtype=DT)
    w = torch.randn(5, 4, 3, 3, dtype=DT)
    s = torch.randn(3, 4, dtype=DT)
    out = modulated_conv2d(x, w, s, demodulate=True)
    for i in range(3):
        wi = w * s[i][None, :, None, None]
        wi = wi / wi.square().sum([1, 2, 3], keepdim=True).sqrt()
        assert torch.allclose(out[i:i + 1], F.conv2d(x[i:i + 1], wi, padding=1), atol=1e-10)


def test_modulated_conv2d_module_style_affine_starts_at_one():
    layer = ModulatedConv2d(4, 5, 3, w_dim=8)
    # bias_init 1 makes the initial styles ~1 + noise, so the first steps are near-plain convolutions
    assert torch.equal(layer.affine.bias * layer.affine.lr_mul, torch.ones(4))


# ----------------------------------------------------------------------------------------------
# equalized learning rate

@pytest.mark.parametrize("lr_mul,gain", [(1.0, 1.0), (0.01, 1.0), (0.5, math.sqrt(2))])
def test_equal_linear_runtime_weight(lr_mul, gain):
    layer = EqualLinear(6, 3, bias_init=0.5, lr_mul=lr_mul, gain=gain).double()
    x = torch.randn(4, 6, dtype=DT)
    w = layer.weight * lr_mul * gain / math.sqrt(6)
    assert torch.allclose(layer(x), x @ w.t() + layer.bias * lr_mul, atol=1e-12)
    assert torch.allclose(layer.bias * lr_mul, torch.full((3,), 0.5, dtype=DT))


def test_equal_conv2d_runtime_weight():
    layer = EqualConv2d(4, 5, 3, gain=2.0, lr_mul=0.1).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 4, 6, 6, dtype=DT)
    w = layer.weight * 0.1 * 2.0 / math.sqrt(4 * 9)
    assert torch.allclose(layer(x), F.conv2d(x, w, layer.bias * 0.1, padding=1), atol=1e-12)


def _twin_linear_layers():
    """Two EqualLinear layers computing the same function, one with lr_mul 0.01."""
    a = EqualLinear(8, 4, lr_mul=1.0).double()
    b = EqualLinear(8, 4, lr_mul=0.01).double()
    with torch.no_grad():
        b.weight.copy_(a.weight / 0.01)
        b.bias.copy_(a.bias / 0.01)
    return a, b


def test_lr_mul_scales_the_stored_weight_gradient():
    a, b = _twin_linear_layers()
    x, t = torch.randn(16, 8, dtype=DT), torch.randn(16, 4, dtype=DT)
    assert torch.allclose(a(x), b(x), atol=1e-12)
    for layer in (a, b):
        (layer(x) - t).square().sum().backward()
    assert torch.allclose(b.weight.grad, 0.01 * a.weight.grad, rtol=1e-9)
    assert torch.allclose(b.bias.grad, 0.01 * a.bias.grad, rtol=1e-9)
    # SGD on the stored weight: its step is 0.01x; the runtime weight (stored * 0.01) moves 1e-4x
    lr = 0.1
    runtime_step_a = lr * a.weight.grad * a.scale
    runtime_step_b = lr * b.weight.grad * b.scale
    assert torch.allclose(runtime_step_b, 1e-4 * runtime_step_a, rtol=1e-9)


def test_lr_mul_makes_the_adam_step_100x_smaller():
    a, b = _twin_linear_layers()
    x, t = torch.randn(16, 8, dtype=DT), torch.randn(16, 4, dtype=DT)
    before = [layer.weight.detach() * layer.scale for layer in (a, b)]
    for layer in (a, b):
        opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
        (layer(x) - t).square().sum().backward()
        opt.step()
    # Adam's step is invariant to the gradient's scale: the stored weights move alike, so the
    # runtime weights move by lr_mul-scaled amounts (the purpose of lr_mul)
    da = a.weight.detach() * a.scale - before[0]
    db = b.weight.detach() * b.scale - before[1]
    assert torch.allclose(db, 0.01 * da, rtol=1e-3)  # not exact: Adam's eps weighs on the smaller gradient


# ----------------------------------------------------------------------------------------------
# minibatch standard deviation

def _mbstd_loop(x: torch.Tensor, group_size: int, num_channels: int, eps: float = 1e-8) -> torch.Tensor:
    """Groups as the module documents them: sample n is in group n % (N // G)."""
    N, C, H, W = x.shape
    G = group_size_for(N, group_size)
    M, Cf = N // G, C // num_channels
    out = torch.empty(N, num_channels, H, W, dtype=x.dtype)
    for n in range(N):
        members = [m for m in range(N) if m % M == n % M]
        assert len(members) == G
        for f in range(num_channels):
            g = x[members, f * Cf:(f + 1) * Cf]                         # [G, Cf, H, W]
            var = ((g - g.mean(0)) ** 2).mean(0)                        # population variance over the group
            out[n, f] = (var + eps).sqrt().mean()
    return torch.cat([x, out], dim=1)


@pytest.mark.parametrize("N,group,channels,expect_g", [(8, 4, 1, 4), (8, 4, 2, 4), (6, 4, 1, 3), (5, 4, 1, 1),
                                                       (3, 4, 1, 3), (2, 4, 1, 2)])
def test_minibatch_std_matches_loop(N, group, channels, expect_g):
    assert group_size_for(N, group) == expect_g  # odd / small batches: the largest dividing group size
    x = torch.randn(N, 4, 3, 3, dtype=DT)
    y = MinibatchStd(group, channels)(x)
    assert y.shape == (N, 4 + channels, 3, 3)
    assert torch.allclose(y, _mbstd_loop(x, group, channels), atol=1e-6)


def test_minibatch_std_sees_a_collapsed_batch():
    x = torch.randn(1, 4, 3, 3).expand(8, -1, -1, -1)
    assert minibatch_std(x)[:, -1].abs().max() < 1e-3  # identical samples: (near) zero std


# ----------------------------------------------------------------------------------------------
# FIR resampling

def _upfirdn_direct(x, f, up, down, pad):
    """Zero insertion, padding (negative crops) and a true convolution as an explicit tap loop."""
    N, C, H, W = x.shape
    xu = torch.zeros(N, C, H * up, W * up, dtype=x.dtype)
    xu[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    xp = torch.zeros(N, C, H * up + py0 + py1, W * up + px0 + px1, dtype=x.dtype)
    for i in range(xp.shape[2]):
        for j in range(xp.shape[3]):
            si, sj = i - py0, j - px0
            if 0 <= si < H * up and 0 <= sj < W * up:
                xp[:, :, i, j] = xu[:, :, si, sj]
    fh, fw = f.shape
    oh, ow = xp.shape[2] - fh + 1, xp.shape[3] - fw + 1
    y = torch.zeros(N, C, oh, ow, dtype=x.dtype)
    for a in range(fh):           # y[p, q] = sum_{a, b} xp[p + a, q + b] * f[fh-1-a, fw-1-b]
        for b in range(fw):
            y += xp[:, :, a:a + oh, b:b + ow] * f[fh - 1 - a, fw - 1 - b]
    return y[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2, 2, 1)), (2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)),
                                         (2, 2, (0, 3, 1, 2)), (1, 1, (-1, 2, 0, -2))])
def test_upfirdn2d_matches_direct_convolution(up, down, pad):
    x = torch.randn(2, 3, 7, 6, dtype=DT)
    f = torch.randn(3, 4, dtype=DT)  # asymmetric, so a missing flip would show
    assert torch.allclose(upfirdn2d(x, f, up, down, pad), _upfirdn_direct(x, f, up, down, pad), atol=1e-12)


def test_upfirdn2d_gain():
    x, f = torch.randn(1, 2, 5, 5, dtype=DT), setup_filter().to(DT)
    assert torch.allclose(upfirdn2d(x, f, pad=(1, 2, 1, 2), gain=3.0), 3 * upfirdn2d(x, f, pad=(1, 2, 1, 2)))


def test_setup_filter_is_normalized_binomial():
    f = setup_filter((1, 3, 3, 1))
    assert torch.allclose(f, torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_resampling_keeps_a_constant_image_constant():
    f = setup_filter().to(DT)
    x = torch.full((2, 3, 8, 8), 1.7, dtype=DT)
    up, down = upsample2d(x, f), downsample2d(x, f)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    # the zero padding outside the image darkens the outermost pixels only
    assert torch.allclose(up[:, :, 1:-1, 1:-1], torch.full_like(up[:, :, 1:-1, 1:-1], 1.7), atol=1e-12)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 1.7), atol=1e-12)
    assert not torch.allclose(up[:, :, 0], torch.full_like(up[:, :, 0], 1.7))


def test_upsample2d_of_ramp_is_a_half_pixel_shifted_ramp():
    f = setup_filter().to(DT)
    x = torch.arange(8, dtype=DT)[None, None, None].expand(1, 1, 8, 8)
    up = upsample2d(x, f)
    # input pixel j covers output pixels 2j, 2j+1: centres at 2j + 0.5, so value = (q - 0.5) / 2
    q = torch.arange(16, dtype=DT)
    assert torch.allclose(up[0, 0, 5, 2:-2], ((q - 0.5) / 2)[2:-2], atol=1e-12)


def test_conv2d_resample_up_equals_conv_of_upsampled_image():
    x = torch.randn(2, 3, 8, 8, dtype=DT)
    w = torch.randn(5, 3, 3, 3, dtype=DT)
    f = setup_filter().to(DT)
    a = conv2d_resample(x, w, f, up=2)
    # StyleGAN2-ADA's orientation: up-sampling weights act as a true convolution (flipped correlation)
    b = F.conv2d(upsample2d(x, f), w.flip([2, 3]), padding=1)
    assert a.shape == b.shape == (2, 5, 16, 16)
    assert not torch.allclose(a[:, :, 1:-1, 1:-1], F.conv2d(upsample2d(x, f), w, padding=1)[:, :, 1:-1, 1:-1])
    # equal away from a one-pixel border: there the fused form sees the filtered image's tails
    # beyond the edge, where the two-step form sees conv2d's zero padding
    assert torch.allclose(a[:, :, 1:-1, 1:-1], b[:, :, 1:-1, 1:-1], atol=1e-10)


@pytest.mark.parametrize("k", [1, 3])
def test_conv2d_resample_down_equals_strided_conv_of_filtered_image(k):
    x = torch.randn(2, 3, 8, 8, dtype=DT)
    w = torch.randn(5, 3, k, k, dtype=DT)
    f = setup_filter().to(DT)
    # low-passed image sampled at the centre of each 2x2 cell's top-left pixel + (0.5, 0.5)
    filtered = upfirdn2d(x, f, pad=(1, 2, 1, 2))
    a = conv2d_resample(x, w, f, down=2)
    b = F.conv2d(filtered, w, stride=2, padding=k // 2)
    assert a.shape == b.shape == (2, 5, 4, 4)
    # k = 3: the top/left output row reads the filtered image above the edge (not conv2d's zero pad)
    assert torch.allclose(a[:, :, k // 2:, k // 2:], b[:, :, k // 2:, k // 2:], atol=1e-10)


def test_conv2d_resample_grouped_up_equals_per_group():
    x = torch.randn(1, 4, 6, 6, dtype=DT)
    w = torch.randn(6, 2, 3, 3, dtype=DT)
    f = setup_filter().to(DT)
    a = conv2d_resample(x, w, f, up=2, groups=2)
    b = torch.cat([conv2d_resample(x[:, 2 * g:2 * g + 2], w[3 * g:3 * g + 3], f, up=2) for g in range(2)], 1)
    assert torch.allclose(a, b, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# normalizations and bias_act

def test_pixel_norm_gives_unit_rms():
    x = torch.randn(4, 7, 3, 3, dtype=DT) * 5
    y = pixel_norm(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(4, 3, 3, dtype=DT), atol=1e-6)
    assert torch.allclose(y / x, (y / x)[:, :1].expand_as(y))  # a per-pixel rescaling only


def test_adain_output_has_the_style_statistics():
    x = torch.randn(3, 4, 8, 8, dtype=DT) * 3 + 2
    scale, shift = torch.rand(3, 4, dtype=DT) + 0.5, torch.randn(3, 4, dtype=DT)
    y = adain(x, torch.cat([scale, shift], dim=1))
    assert torch.allclose(y.mean(dim=[2, 3]), shift, atol=1e-6)
    assert torch.allclose(y.std(dim=[2, 3], unbiased=False), scale, atol=1e-6)


def test_bias_act_lrelu_gain_and_clamp():
    x = torch.tensor([[-2.0, -0.5, 0.0, 0.5, 3.0]], dtype=DT)
    b = torch.tensor([1.0], dtype=DT)
    y = bias_act(x.t(), b, act="lrelu")  # [5, 1]: the bias is added along dim 1
    xb = x.t() + 1
    assert torch.allclose(y, torch.where(xb > 0, xb, 0.2 * xb) * math.sqrt(2))
    yc = bias_act(x.t(), b, act="lrelu", clamp=2.0)
    assert torch.allclose(yc, y.clamp(-2, 2)) and yc.abs().max() == 2.0
    assert torch.allclose(bias_act(x, act="linear"), x)
    assert torch.allclose(bias_act(x, act="relu", gain=1.0), x.relu())


def test_lrelu_gain_roughly_preserves_the_second_moment():
    x = torch.randn(1_000_000, dtype=DT)
    # E[lrelu(x)^2] = (1 + 0.2^2) / 2, so sqrt(2) brings it to 1.04: He init's correction for ReLU
    assert abs(bias_act(x, act="lrelu").square().mean().item() - 1.04) < 0.01


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("clamp", [None, 0.5])
def test_lean_bias_act_matches_the_reference_to_second_order(act, clamp):
    """The memory-lean autograd path saves only the output; R1 / path length differentiate through
    it, so its first and second derivatives must equal those of the plain expression."""
    from hifigan.nn.activation import bias_act_reference
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    lean = lambda x, b: bias_act(x, b, act=act, clamp=clamp)  # noqa: E731
    ref = lambda x, b: bias_act_reference(x, b, act=act, clamp=clamp)  # noqa: E731
    assert torch.equal(lean(x, b), ref(x, b))
    assert torch.autograd.gradcheck(lean, (x, b)) and torch.autograd.gradgradcheck(lean, (x, b))
    outs = []
    for f in (lean, ref):
        gx, = torch.autograd.grad(f(x, b).square().sum(), x, create_graph=True)
        outs.append(torch.autograd.grad(gx.square().sum(), (x, b)))
    assert all(torch.allclose(p, q) for p, q in zip(*outs))
