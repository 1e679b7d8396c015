"""StyleGAN2 generator and discriminator (Karras et al. 2020, arXiv:1912.04958): sizes, the
generator interface the objectives and tools rely on (truncation, style mixing, noise modes,
return_ws), numerics (fused modconv, conv_clamp, CPU with fp16 settings) and that every parameter
gets a gradient (DDP without find_unused_parameters)."""
from __future__ import annotations

import pytest
import torch

from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.models.stylegan2 import DownConv
from hifigan.nn.equalized import EqualConv2d
from hifigan.nn.modconv import ModulatedConv2d
from hifigan.nn.noise import NoiseInjection
from hifigan.registry import DISCRIMINATORS, GENERATORS

SMALL = dict(resolution=32, channel_base=512, channel_max=64)
Z = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def make_g(**kw):
    torch.manual_seed(0)
    return GENERATORS.build("stylegan2", {**SMALL, "z_dim": Z, "w_dim": Z, **kw})


def make_d(**kw):
    torch.manual_seed(1)
    return DISCRIMINATORS.build("stylegan2", {**SMALL, **kw})


def set_noise_strength(G, value: float):
    """Strengths start at 0; tests of the noise modes need noise that shows."""
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, NoiseInjection):
                m.strength.fill_(value)


@pytest.fixture(scope="module")
def G():
    return make_g()


# ----------------------------------------------------------------------------------------------
# sizes

@pytest.mark.parametrize("res,g_params,d_params", [(1024, 30_370_060, 29_012_513),  # the paper's config F
                                                   (512, 30_276_583, 28_982_849),
                                                   (256, 30_034_338, 28_864_129)])
def test_config_f_parameter_counts(res, g_params, d_params):
    G = GENERATORS.build("stylegan2", {"resolution": res})
    D = DISCRIMINATORS.build("stylegan2", {"resolution": res})
    assert count_params(G) == g_params
    assert count_params(D) == d_params
    assert G.num_ws == 2 * (res.bit_length() - 1) - 2


@pytest.mark.parametrize("res,num_ws", [(8, 4), (32, 8)])
def test_output_shapes_and_num_ws(res, num_ws):
    G, D = make_g(resolution=res), make_d(resolution=res)
    img, ws = G(torch.randn(3, Z), return_ws=True)
    assert G.num_ws == num_ws and ws.shape == (3, num_ws, Z)
    assert G.img_shape == (3, res, res) and img.shape == (3, 3, res, res) and img.dtype == torch.float32
    assert D(img).shape == (3,)


def test_each_toRGB_shares_the_w_of_the_next_blocks_conv0(G):
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append(args[1][0, 0].item()))
             for m in G.synthesis.modules() if isinstance(m, ModulatedConv2d)]
    ws = torch.arange(G.num_ws, dtype=torch.float32)[None, :, None].expand(1, -1, Z)  # layer i's w = i
    G.synthesis(ws)
    for h in hooks:
        h.remove()
    # module order per block: conv0, conv1, torgb; 4x4 has no conv0
    assert seen == [0, 1] + [v for b in range(1, 4) for v in (2 * b - 1, 2 * b, 2 * b + 1)]


def test_bad_resolution_is_rejected_with_the_key():
    with pytest.raises(UserError, match="power of two >= 8, got 48"):
        make_g(resolution=48)


# ----------------------------------------------------------------------------------------------
# generator interface

def test_truncation_psi_zero_gives_the_average_w(G):
    G.mapping.w_avg.zero_()
    G(torch.randn(16, Z), update_w_avg=True)  # moves w_avg away from 0, so the check means something
    assert G.w_avg.abs().sum() > 0 and G.w_avg is G.mapping.w_avg
    z = torch.randn(2, Z)
    img, ws = G(z, psi=0.0, noise_mode="const", return_ws=True)
    assert torch.allclose(ws, G.w_avg.expand_as(ws))
    assert torch.equal(img[0], img[1])  # two different z, one image
    _, ws_cut = G(z, psi=0.0, cutoff=3, return_ws=True)
    assert torch.allclose(ws_cut[:, :3], G.w_avg.expand(2, 3, -1))
    assert torch.allclose(ws_cut[:, 3:], G.mapping(z)[:, 3:])


def test_style_mixing_switches_at_the_crossover(G):
    z, mix_z = torch.randn(3, Z), torch.randn(3, Z)
    crossover = torch.tensor([2, 5, G.num_ws])
    _, ws = G(z, mix_z=mix_z, crossover=crossover, return_ws=True)
    a, b = G.mapping(z), G.mapping(mix_z)
    for i, k in enumerate(crossover.tolist()):
        assert torch.allclose(ws[i, :k], a[i, :k]) and torch.allclose(ws[i, k:], b[i, k:])


def test_no_mixing_gradient_at_crossover_num_ws(G):
    z, mix_z = torch.randn(2, Z), torch.randn(2, Z, requires_grad=True)
    img = G(z, mix_z=mix_z, crossover=torch.full((2,), G.num_ws))
    img.square().sum().backward()
    assert mix_z.grad is None or mix_z.grad.abs().max() == 0
    mix_z.grad = None
    G(z, mix_z=mix_z, crossover=torch.ones(2, dtype=torch.int64)).square().sum().backward()
    assert mix_z.grad.abs().max() > 0  # and it does flow when mixing happens


def test_returned_ws_are_differentiable_for_path_length(G):
    img, ws = G(torch.randn(2, Z), return_ws=True)
    (g,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), ws)
    assert g.shape == ws.shape and g.abs().sum() > 0


def test_noise_modes():
    G = make_g()
    set_noise_strength(G, 0.5)
    ws = G.mapping(torch.randn(2, Z))
    const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    assert torch.equal(const1, const2)
    assert not torch.allclose(const1, G.synthesis(ws, noise_mode="none"), atol=1e-3)
    assert not torch.allclose(G.synthesis(ws), G.synthesis(ws), atol=1e-3)  # "random" draws anew
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="fixed")


@pytest.mark.parametrize("training", [True, False])
def test_fused_and_unfused_modconv_agree(G, training):
    G.train(training)
    ws = G.mapping(torch.randn(3, Z))
    fused = G.synthesis(ws, noise_mode="const", fused=True)
    unfused = G.synthesis(ws, noise_mode="const", fused=False)
    default = G.synthesis(ws, noise_mode="const")
    G.train()
    assert torch.allclose(fused, unfused, atol=1e-4, rtol=1e-4)
    assert torch.allclose(default, fused if not training else unfused, atol=1e-6)


def test_fp16_settings_run_in_float32_on_cpu():
    ref, G = make_g(), make_g(num_fp16_res=2, conv_clamp=256.0)
    D_ref, D = make_d(), make_d(num_fp16_res=2, conv_clamp=256.0)
    z = torch.randn(2, Z)
    img = G(z, noise_mode="const")
    assert img.dtype == torch.float32 and torch.equal(img, ref(z, noise_mode="const"))
    assert torch.equal(D(img), D_ref(img))


# ----------------------------------------------------------------------------------------------
# discriminator, clamping, conditioning

def test_discriminator_takes_an_odd_batch():
    D = make_d()
    logits = D(torch.randn(5, 3, 32, 32))
    assert logits.shape == (5,) and torch.isfinite(logits).all()


def _record_outputs(net, types):
    """Outputs of every clampable conv (the linear D skip is unclamped, as its input already is)."""
    outs = []
    hooks = [m.register_forward_hook(lambda m, i, o: outs.append(o.detach())) for n, m in net.named_modules()
             if isinstance(m, types) and not n.endswith("skip")]
    return outs, hooks


def test_conv_clamp_bounds_every_conv_output():
    z, img = torch.randn(2, Z), torch.randn(2, 3, 32, 32) * 4
    for clamp in (None, 0.25):
        G, D = make_g(conv_clamp=clamp), make_d(conv_clamp=clamp)
        set_noise_strength(G, 1.0)
        outs, hooks = _record_outputs(G, ModulatedConv2d)
        outs_d, hooks_d = _record_outputs(D, (EqualConv2d, DownConv))
        G(z), D(img)
        peak = max(o.abs().max().item() for o in outs + outs_d)
        for h in hooks + hooks_d:
            h.remove()
        if clamp is None:
            assert peak > 1.0  # without the clamp the activations do exceed it
        else:
            assert peak <= clamp + 1e-6 and peak == pytest.approx(clamp)


def test_conditional_generator_and_discriminator():
    G, D = make_g(num_classes=3), make_d(num_classes=3)
    z, c = torch.randn(4, Z), torch.tensor([0, 1, 2, 1])
    img = G(z, c, noise_mode="const")
    logits = D(img, c)
    assert img.shape == (4, 3, 32, 32) and logits.shape == (4,)
    assert not torch.allclose(G(z, c.roll(1), noise_mode="const"), img)  # the class changes the image
    assert not torch.allclose(D(img, c.roll(1)), logits)                 # and the score
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    with pytest.raises(ValueError, match="conditional"):
        D(img)


# ----------------------------------------------------------------------------------------------
# every parameter is used

@pytest.mark.parametrize("num_classes", [0, 3])
def test_every_parameter_gets_a_gradient(num_classes):
    G, D = make_g(num_classes=num_classes), make_d(num_classes=num_classes)
    c = torch.arange(4) % 3 if num_classes else None
    D(G(torch.randn(4, Z), c), c).sum().backward()
    for name, net in (("G", G), ("D", D)):
        missing = [n for n, p in net.named_parameters() if p.grad is None]
        assert not missing, f"{name} parameters without a gradient: {missing}"
        if not num_classes:  # (class tables only get gradients in the rows of classes present)
            zero = [n for n, p in net.named_parameters() if p.grad.abs().max() == 0]
            assert not zero, f"{name} parameters with an all-zero gradient: {zero}"


# ----------------------------------------------------------------------------------------------
# the reference's conventions (StyleGAN2-ADA): w_avg tracking, the conditioning path

def _lrelu(x):
    return torch.nn.functional.leaky_relu(x, 0.2) * 2 ** 0.5


def _fc(layer, x, act=True):
    """An equalized-lr fully connected layer by hand: w * lr_mul / sqrt(in), b * lr_mul."""
    y = x @ (layer.weight * layer.lr_mul / layer.weight.shape[1] ** 0.5).t() + layer.bias * layer.lr_mul
    return _lrelu(y) if act else y


def _normalize(x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def test_w_avg_tracks_every_training_mode_call_but_not_the_mixing_latent():
    G = make_g()
    beta = G.mapping.w_avg_beta
    z, z2 = torch.randn(6, Z), torch.randn(6, Z)
    G.mapping.w_avg.zero_()
    G(z, mix_z=z2, crossover=3)  # training mode (the default): z's w updates the average, z2's does not
    w = G.mapping(z, update_w_avg=False)[:, 0]
    assert torch.allclose(G.w_avg, w.mean(0) * (1 - beta), atol=1e-7)
    before = G.w_avg.clone()
    G.eval()
    G(z2)
    assert torch.equal(G.w_avg, before)  # eval mode never moves it
    G.train()
    G(z2, update_w_avg=False)
    assert torch.equal(G.w_avg, before)


def test_one_crossover_for_the_batch_mixes_every_sample_at_that_layer(G):
    z, mix_z = torch.randn(3, Z), torch.randn(3, Z)
    _, ws = G(z, mix_z=mix_z, crossover=4, return_ws=True, update_w_avg=False)
    a, b = G.mapping(z, update_w_avg=False), G.mapping(mix_z, update_w_avg=False)
    assert torch.allclose(ws[:, :4], a[:, :4]) and torch.allclose(ws[:, 4:], b[:, 4:])
    _, ws = G(z, mix_z=mix_z, crossover=G.num_ws, return_ws=True, update_w_avg=False)
    assert torch.allclose(ws, a)


def test_conditioning_follows_the_reference_path_by_hand():
    G, D = make_g(num_classes=5, mapping_layers=2), make_d(num_classes=5, mapping_layers=3)
    z, c = torch.randn(4, Z), torch.tensor([0, 4, 2, 1])
    onehot = torch.nn.functional.one_hot(c, 5).float()
    # G: normalize(z) ++ normalize(embed(onehot)) -> FC layers
    m = G.mapping
    x = torch.cat([_normalize(z), _normalize(_fc(m.embed, onehot, act=False))], dim=1)
    for layer in m.layers:
        x = _fc(layer, x)
    assert torch.allclose(G.mapping(z, c, update_w_avg=False)[:, 0], x, atol=1e-5)
    # D: cmap = normalize(embed(onehot)) -> 3 FC layers (lr_mul 0.01); logit = <out, cmap> / sqrt(cmap_dim)
    y = _normalize(_fc(D.mapping.embed, onehot, act=False))
    for layer in D.mapping.layers:
        y = _fc(layer, y)
    assert len(D.mapping.layers) == 3 and D.mapping.layers[0].lr_mul == 0.01 and D.mapping.w_avg is None
    img = torch.randn(4, 3, 32, 32)
    feats = img
    for block in D.blocks.values():
        feats = block(feats)
    out = D.epilogue(feats)
    assert torch.allclose(D(img, c), (out * y).sum(1) / D.cmap_dim ** 0.5, atol=1e-5)


def test_conditional_discriminator_parameter_count_matches_the_reference_layout():
    D0, D10 = (DISCRIMINATORS.build("stylegan2", {"resolution": 256, "num_classes": k}) for k in (0, 10))
    c4 = 512
    label_mapping = (10 * c4 + c4) + 8 * (c4 * c4 + c4)  # embed + 8 FC layers (StyleGAN2-ADA's D mapping)
    projection_out = (c4 - 1) * (c4 + 1)                   # the output layer gives cmap_dim values, not 1 (weight + bias)
    assert count_params(D10) - count_params(D0) == label_mapping + projection_out


def test_use_noise_false_has_no_noise_inputs_and_is_deterministic():
    G = make_g(use_noise=False)
    assert not [k for k in G.state_dict() if "noise" in k]
    assert count_params(make_g()) - count_params(G) == 1 + 2 * 3  # one strength per conv: 4x4 has one, 8..32 two
    z = torch.randn(2, Z)
    assert torch.equal(G(z, noise_mode="random"), G(z, noise_mode="const"))
