"""ProGAN networks (arXiv:1710.10196) and the progressive-growing interface the trainer relies on."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from hifigan.models import count_params
from hifigan.models.progan import PixelNormed
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.train.ema import ema_update

SMALL = dict(resolution=32, channel_base=256, channel_max=32)  # channels 32, 32, 16, 8 at 4..32
STAGES = [4, 8, 16, 32]


def small_g(**kw):
    torch.manual_seed(0)
    return GENERATORS.build("progan", dict(SMALL, z_dim=16, **kw))


def small_d(**kw):
    torch.manual_seed(1)
    return DISCRIMINATORS.build("progan", dict(SMALL, **kw))


def test_shapes_at_every_stage():
    G, D = small_g(), small_d()
    assert G.progressive and D.progressive
    assert G.stage_info() == (32, 1.0) and D.stage_info() == (32, 1.0)  # never set: full size
    assert G.img_shape == (3, 32, 32)
    z = torch.randn(5, 16)
    for r in STAGES:
        for alpha in (0.0, 0.5, 1.0):
            G.set_stage(r, alpha)
            D.set_stage(r, alpha)
            img = G(z)
            assert img.shape == (5, 3, r, r)
            assert D(img).shape == (5,)


def test_set_stage_rejects_bad_values():
    G = small_g()
    for r, a in [(64, 1.0), (12, 1.0), (2, 1.0), (8, 1.5), (8, -0.1)]:
        with pytest.raises(ValueError):
            G.set_stage(r, a)
    D = small_d()
    D.set_stage(8, 1.0)
    with pytest.raises(ValueError, match="stage"):
        D(torch.randn(2, 3, 16, 16))  # images must match the stage resolution


def test_g_at_alpha0_equals_upsampled_previous_stage():
    G, z = small_g(), torch.randn(4, 16)
    for r in STAGES[1:]:
        G.set_stage(r, 0.0)
        new = G(z)
        G.set_stage(r // 2, 1.0)
        old = G(z)
        assert torch.equal(new, F.interpolate(old, scale_factor=2, mode="nearest"))
        G.set_stage(r, 0.5)  # and the fade really mixes something else in
        assert not torch.allclose(G(z), new)


def test_d_at_alpha0_equals_d_of_pooled_image_at_previous_stage():
    D = small_d()
    for r in STAGES[1:]:
        img = torch.randn(4, 3, r, r)
        D.set_stage(r, 0.0)
        new = D(img)
        D.set_stage(r // 2, 1.0)
        assert torch.equal(new, D(F.avg_pool2d(img, 2)))
        D.set_stage(r, 0.5)
        assert not torch.allclose(D(img), new)


def _perturb(module):
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


@pytest.mark.parametrize("r", STAGES[1:])
def test_alpha1_ignores_previous_resolution_rgb_layers(r):
    G, D = small_g(), small_d()
    z, img = torch.randn(4, 16), torch.randn(4, 3, r, r)
    outs = {}
    for alpha in (1.0, 0.5):
        G.set_stage(r, alpha)
        D.set_stage(r, alpha)
        outs[alpha] = (G(z), D(img))
    _perturb(G.to_rgb[str(r // 2)])
    _perturb(D.from_rgb[str(r // 2)])
    G.set_stage(r, 1.0)
    D.set_stage(r, 1.0)
    assert torch.equal(G(z), outs[1.0][0]) and torch.equal(D(img), outs[1.0][1])
    G.set_stage(r, 0.5)  # the perturbed layers do matter during the fade
    D.set_stage(r, 0.5)
    assert not torch.allclose(G(z), outs[0.5][0]) and not torch.allclose(D(img), outs[0.5][1])


def test_stage_buffer_survives_state_dict_and_ema_copy():
    G, z = small_g(), torch.randn(3, 16)
    G.set_stage(16, 0.25)
    sd = G.state_dict()
    assert sd["stage"].dtype == torch.float64 and sd["stage"].tolist() == [16.0, 0.25]
    fresh = small_g()
    assert fresh.stage_info() == (32, 1.0)
    fresh.load_state_dict(sd)
    assert fresh.stage_info() == (16, 0.25)
    assert torch.equal(fresh(z), G(z))
    ema = copy.deepcopy(small_g())
    ema_update(ema, G, beta=0.9)  # the trainer's EMA: parameters averaged, buffers copied
    assert ema.stage_info() == (16, 0.25) and ema(z).shape == (3, 3, 16, 16)
    D = small_d()
    D.set_stage(8, 0.75)
    fresh_d = small_d()
    fresh_d.load_state_dict(D.state_dict())
    assert fresh_d.stage_info() == (8, 0.75)


def _grad_names(net):
    return {n for n, p in net.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def _g_expected(G, r, alpha):
    keep = [f"blocks.{s}." for s in STAGES if s <= r] + [f"to_rgb.{r}."]
    if r > 4 and alpha < 1:
        keep.append(f"to_rgb.{r // 2}.")
    return {n for n, _ in G.named_parameters() if n.startswith(tuple(keep))}


def _d_expected(D, r, alpha):
    keep = [f"blocks.{s}." for s in STAGES if 4 < s <= r] + [f"from_rgb.{r}.", "epilogue."]
    if r > 4 and alpha < 1:
        keep.append(f"from_rgb.{r // 2}.")
    return {n for n, _ in D.named_parameters() if n.startswith(tuple(keep))}


@pytest.mark.parametrize("r,alpha", [(4, 1.0), (8, 0.5), (16, 1.0), (32, 0.5), (32, 1.0)])
def test_gradient_reaches_exactly_the_layers_at_or_below_the_stage(r, alpha):
    G, D = small_g(), small_d()
    G.set_stage(r, alpha)
    D.set_stage(r, alpha)
    G(torch.randn(4, 16)).square().mean().backward()
    D(torch.randn(4, 3, r, r)).square().mean().backward()
    g_expected, d_expected = _g_expected(G, r, alpha), _d_expected(D, r, alpha)
    assert _grad_names(G) == g_expected
    assert {n for n, p in G.named_parameters() if p.grad is not None} == g_expected
    assert _grad_names(D) == d_expected
    assert {n for n, p in D.named_parameters() if p.grad is not None} == d_expected


def test_full_size_parameter_counts_match_the_paper():
    torch.manual_seed(0)
    G, D = GENERATORS.build("progan", {}), DISCRIMINATORS.build("progan", {})
    nG, nD = count_params(G), count_params(D)
    print(f"ProGAN 1024^2: G {nG:,} parameters, D {nD:,} parameters (paper: 23.1M each)")
    assert abs(nG - 23.1e6) / 23.1e6 < 0.01
    assert abs(nD - 23.1e6) / 23.1e6 < 0.01
    assert G.to_rgb["1024"].conv.weight.shape[1] == 16 and G.to_rgb["32"].conv.weight.shape[1] == 512


@pytest.mark.parametrize("enabled", [True, False])
def test_pixel_norm_after_each_generator_conv(enabled):
    G = small_g(pixel_norm=enabled)
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o)) for m in G.modules() if isinstance(m, PixelNormed)]
    G.set_stage(32, 0.5)
    with torch.no_grad():
        G(torch.randn(3, 16) * 5)
    for h in hooks:
        h.remove()
    assert len(outs) == 2 * len(STAGES)  # two convs per resolution, the 4x4 "dense" included
    unit = [torch.allclose(o.square().mean(dim=1), torch.ones(()), atol=1e-4) for o in outs]
    assert all(unit) if enabled else not any(unit)


def test_conditional_variant_uses_the_labels():
    G, D = small_g(num_classes=5), small_d(num_classes=5)
    z, c0, c1 = torch.randn(4, 16), torch.zeros(4, dtype=torch.long), torch.tensor([1, 2, 3, 4])
    img0, img1 = G(z, c0), G(z, c1)
    assert img0.shape == (4, 3, 32, 32) and not torch.allclose(img0, img1)
    with torch.no_grad():  # the projection embedding starts random, so labels change the logit
        assert not torch.allclose(D(img0, c0), D(img0, c1))
    G.set_stage(8, 0.5)
    D.set_stage(8, 0.5)
    assert D(G(z, c1), c1).shape == (4,)
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    with pytest.raises(ValueError, match="conditional"):
        D(img0[:, :, :8, :8])
