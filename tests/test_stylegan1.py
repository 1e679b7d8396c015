"""StyleGAN v1 networks (arXiv:1812.04948): mapping/synthesis interface, truncation, mixing, AdaIN,
noise, progressive growing and the paper's parameter count."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hifigan.models import count_params
from hifigan.registry import DISCRIMINATORS, GENERATORS

SMALL = dict(resolution=32, channel_base=256, channel_max=32)  # channels 32, 32, 16, 8 at 4..32
Z = 32


def small_g(**kw):
    torch.manual_seed(0)
    G = GENERATORS.build("stylegan1", dict(SMALL, z_dim=Z, w_dim=Z, **kw))
    with torch.no_grad():
        G.mapping.w_avg.normal_()  # a w_avg away from 0, so truncation visibly moves ws
    return G


def small_d(**kw):
    torch.manual_seed(1)
    return DISCRIMINATORS.build("stylegan1", dict(SMALL, **kw))


def test_shapes_and_num_ws():
    G, D = small_g(), small_d()
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_shape) == (Z, Z, 8, (3, 32, 32))
    assert not G.progressive and not D.progressive
    img, ws = G(torch.randn(3, Z), return_ws=True)
    assert img.shape == (3, 3, 32, 32) and ws.shape == (3, 8, Z)
    assert torch.equal(G.synthesis(ws, noise_mode="none"), G.synthesis(ws, noise_mode="none"))
    assert D(img).shape == (3,)
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws[:, :7])


def test_psi0_returns_w_avg_and_identical_images():
    G = small_g()
    img, ws = G(torch.randn(4, Z), psi=0.0, noise_mode="const", return_ws=True)
    assert torch.allclose(ws, G.w_avg.expand_as(ws))
    assert torch.allclose(img, img[:1].expand_as(img), atol=1e-6)
    img1 = G(torch.randn(4, Z), psi=1.0, noise_mode="const")
    assert not torch.allclose(img1, img1[:1].expand_as(img1), atol=1e-3)


def test_truncation_cutoff_leaves_later_layers_untouched():
    G, z = small_g(), torch.randn(4, Z)
    _, ws = G(z, return_ws=True)
    _, wt = G(z, psi=0.5, cutoff=3, return_ws=True)
    assert torch.equal(wt[:, 3:], ws[:, 3:])
    assert torch.allclose(wt[:, :3], G.w_avg + 0.5 * (ws[:, :3] - G.w_avg), atol=1e-6)
    assert not torch.allclose(wt[:, :3], ws[:, :3])


def test_style_mixing_switches_at_the_crossover_layer():
    G, z, z2 = small_g(), torch.randn(2, Z), torch.randn(2, Z)
    _, ws1 = G(z, return_ws=True)
    _, ws2 = G(z2, return_ws=True)
    _, mixed = G(z, mix_z=z2, crossover=torch.tensor([2, 5]), return_ws=True)
    for i, k in enumerate([2, 5]):
        assert torch.equal(mixed[i, :k], ws1[i, :k]) and torch.equal(mixed[i, k:], ws2[i, k:])
    for crossover, mixes in ((G.num_ws, False), (3, True)):
        mix_z = z2.clone().requires_grad_(True)
        img = G(z, mix_z=mix_z, crossover=torch.full((2,), crossover), noise_mode="const")
        (g,) = torch.autograd.grad(img.square().sum(), mix_z, allow_unused=True)
        moved = g is not None and bool(g.abs().sum() > 0)
        assert moved == mixes


def test_adain_sets_each_channels_mean_and_std_to_the_style():
    G = small_g()
    epi = G.synthesis.blocks["8"].epi1
    seen = []
    h = epi.register_forward_hook(lambda m, i, o: seen.append((i[1], o)))
    with torch.no_grad():
        G(torch.randn(3, Z))
    h.remove()
    w, out = seen[0]
    scale, shift = epi.style(w).chunk(2, dim=1)  # [N, C] each
    assert torch.allclose(out.mean(dim=[2, 3]), shift, atol=1e-4)
    assert torch.allclose(out.std(dim=[2, 3], unbiased=False), scale.abs(), atol=1e-3)
    C = out.shape[1]  # freshly built: the scale half of the style bias is 1, the shift half 0
    assert torch.equal(epi.style.bias.detach(), torch.cat([torch.ones(C), torch.zeros(C)]))


def test_per_channel_noise_strength_changes_only_its_channel():
    G, z = small_g(), torch.randn(2, Z)
    epi = G.synthesis.blocks["32"].epi1
    outs = {}
    h = epi.register_forward_hook(lambda m, i, o: outs.__setitem__(i[2], o))
    with torch.no_grad():
        imgs = {mode: G(z, noise_mode=mode) for mode in ("none", "const")}
        assert torch.equal(imgs["none"], imgs["const"])  # strengths start at zero
        epi.noise.strength[3] = 1.0
        imgs = {mode: G(z, noise_mode=mode) for mode in ("none", "const")}
    h.remove()
    assert not torch.allclose(imgs["none"], imgs["const"])
    changed = (outs["none"] - outs["const"]).abs().amax(dim=[0, 2, 3]) > 1e-5
    assert changed.nonzero().flatten().tolist() == [3]


def test_progressive_alpha0_continuity_and_unused_ws():
    G, D = small_g(progressive=True), small_d(progressive=True)
    assert G.progressive and D.progressive and G.stage_info() == (32, 1.0)
    _, ws = G(torch.randn(3, Z), return_ws=True)
    for r in (8, 16, 32):
        G.set_stage(r, 0.0)
        new = G.synthesis(ws, noise_mode="const")
        G.set_stage(r // 2, 1.0)
        old = G.synthesis(ws, noise_mode="const")
        assert torch.equal(new, F.interpolate(old, scale_factor=2, mode="nearest"))
        img = torch.randn(3, 3, r, r)
        D.set_stage(r, 0.0)
        d_new = D(img)
        D.set_stage(r // 2, 1.0)
        assert torch.equal(d_new, D(F.avg_pool2d(img, 2)))
    G.set_stage(8, 0.5)  # 8x8 uses ws[:, :4]; later layers consume nothing
    ws2 = ws.clone()
    ws2[:, 4:] = torch.randn_like(ws2[:, 4:])
    assert G(torch.randn(3, Z)).shape == (3, 3, 8, 8)
    assert torch.equal(G.synthesis(ws, "const"), G.synthesis(ws2, "const"))
    sd = G.state_dict()
    assert sd["synthesis.stage"].tolist() == [8.0, 0.5]
    fresh = small_g(progressive=True)
    fresh.load_state_dict(sd)
    assert fresh.stage_info() == (8, 0.5)


def test_fixed_size_networks_refuse_to_grow():
    G, D = small_g(), small_d()
    G.set_stage(32, 1.0)  # the full stage is a no-op
    for net in (G, D):
        with pytest.raises(ValueError, match="progressive"):
            net.set_stage(16, 1.0)


def test_full_size_parameter_count_matches_the_paper():
    torch.manual_seed(0)
    G, D = GENERATORS.build("stylegan1", {}), DISCRIMINATORS.build("stylegan1", {})
    nG, nD = count_params(G), count_params(D)
    print(f"StyleGAN 1024^2: G {nG:,} parameters (paper: 26.2M), D {nD:,} parameters, num_ws {G.num_ws}")
    assert G.num_ws == 18
    assert abs(nG - 26.2e6) / 26.2e6 < 0.02


@pytest.mark.parametrize("num_classes", [0, 4])
def test_every_parameter_gets_a_gradient_when_not_progressive(num_classes):
    G, D = small_g(num_classes=num_classes), small_d(num_classes=num_classes)
    c = torch.tensor([0, 1, 2, 3]) if num_classes else None
    img = G(torch.randn(4, Z), c, noise_mode="random")
    D(img, c).square().mean().backward()
    for net in (G, D):
        missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert missing == []
