"""BigGAN, BigGAN-deep and SAGAN networks (hifigan/models/biggan.py, biggan_deep.py, sagan.py) and their
layers (hifigan/nn/attention.py, the SN embedding of nn/spectral.py, nn/init.py): full-size parameter
counts (built on the meta device: no memory, no init cost), the layout per layer, self-attention starting
as the identity, conditional batch norm following the class only through its gain and bias, unit
spectral norms, forward shapes at 32x32 (conditional, unconditional, one channel) and one-line config errors."""
import dataclasses

import pytest
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.nn.attention import SelfAttention
from hifigan.nn.norms import ConditionalBatchNorm2d, CrossReplicaBatchNorm2d
from hifigan.nn.spectral import SpectralNorm
from hifigan.registry import DISCRIMINATORS, GENERATORS

FAMILIES = ["biggan", "biggan_deep", "sagan"]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: conftest's one intra-op thread


def full_size(arch: str):
    with torch.device("meta"):
        return GENERATORS.build(arch, {}), DISCRIMINATORS.build(arch, {})


def tiny(arch: str, num_classes: int = 10, channels: int = 3, **extra):
    """ch 2 at 32x32: 8 channels in G (attention at 16 needs a multiple of 8), D widths 8."""
    torch.manual_seed(0)
    common = dict(resolution=32, ch=2, num_classes=num_classes, channels=channels, attention=[16])
    g_extra = {"dim_z": 16, **({"shared_dim": 8} if arch != "sagan" else {}), **extra}
    return GENERATORS.build(arch, {**common, **g_extra}), DISCRIMINATORS.build(arch, common)


# ----------------------------------------------------------------------------------------------
# sizes

@pytest.mark.parametrize("arch,g_params,d_params", [("biggan", 70_433_988, 87_982_370),       # ch 96, 128x128
                                                    ("biggan_deep", 50_244_484, 34_590_210),  # ch 128
                                                    ("sagan", 42_017_412, 39_448_258)])       # ch 64
def test_full_size_parameter_counts_match_the_reference(arch, g_params, d_params):
    G, D = full_size(arch)
    assert (count_params(G), count_params(D)) == (g_params, d_params)
    assert G.z_dim == {"biggan": 120, "biggan_deep": 128, "sagan": 128}[arch]
    assert G.num_classes == D.num_classes == 1000 and G.img_shape == (3, 128, 128)


def test_biggan_layout_layer_by_layer():
    G, D = full_size("biggan")
    assert count_params(G.shared) == 1000 * 128 and count_params(G.linear) == 20 * 16 * 96 * 16 + 16 * 96 * 16
    assert [count_params(b) for b in G.blocks] == [45_740_544, 17_789_184, 4_618_368, 1_240_128, 352_800]
    assert list(G.attention) == ["3"] and count_params(G.attention["3"]) == 46_081  # after the 64x64 block, C 192
    assert [count_params(m) for m in G.out] == [192, 0, 2_595, 0]                    # BN gain + bias, ReLU, conv, tanh
    assert G.blocks[0].bn1.gain.module.in_features == 128 + 20                        # shared embedding + z chunk
    assert [count_params(b) for b in D.blocks] == [86_112, 516_672, 2_065_536, 8_259_840, 33_034_752, 42_470_400]
    assert list(D.attention) == ["0"] and count_params(D.attention["0"]) == 11_521    # after the first block, C 96
    assert count_params(D.linear) == 1_537 and count_params(D.embed) == 1_536_000
    assert not isinstance(G.shared, SpectralNorm) and isinstance(D.embed, SpectralNorm)


def test_sagan_embeds_the_class_in_every_batch_norm_and_feeds_all_of_z_to_the_linear_layer():
    G, D = full_size("sagan")
    assert G.shared is None
    assert G.linear.module.in_features == 128
    bn = G.blocks[0].bn1
    assert isinstance(bn.gain, nn.Embedding) and bn.gain.weight.shape == (1000, 16 * 64)
    assert list(G.attention) == ["3"] and count_params(G.attention["3"]) == 20_481  # C 128 at 64x64
    assert list(D.attention) == ["0"] and count_params(D.attention["0"]) == 5_121   # C 64 at 64x64


def test_biggan_deep_layout():
    G, D = full_size("biggan_deep")
    assert [len(group) for group in G.blocks] == [2] * 5 and [len(group) for group in D.blocks] == [2] * 5
    assert G.linear.module.in_features == 256 and G.blocks[0][0].bn1.gain.module.in_features == 256
    first, second = G.blocks[1]  # 16 ch -> 8 ch at 16x16: the first keeps its channels, the second upsamples
    assert (first.conv4.module.out_channels, first.up) == (16 * 128, False)
    assert (second.conv4.module.out_channels, second.up, second.conv1.module.out_channels) == (8 * 128, True, 512)
    assert D.input_conv.module.out_channels == 128 and D.blocks[0][0].conv_sc.module.out_channels == 128
    assert D.blocks[0][1].conv_sc is None and D.blocks[0][0].down and not D.blocks[0][1].down


# ----------------------------------------------------------------------------------------------
# layers

def test_self_attention_with_gamma_zero_is_the_identity_and_has_the_reference_size():
    torch.manual_seed(0)
    attn = SelfAttention(16)
    assert count_params(attn) == 2 * 16 * 2 + 2 * 16 * 8 + 1  # 2 C C/8 + 2 C C/2 + gamma
    x = torch.randn(2, 16, 8, 6)
    assert torch.equal(attn(x), x)
    with torch.no_grad():
        attn.gamma.fill_(0.5)
    y = attn(x)
    assert y.shape == x.shape and not torch.allclose(y, x)
    with pytest.raises(ValueError, match="multiple of 8"):
        SelfAttention(12)


def test_self_attention_mixes_positions():
    """An output position depends on far-away inputs (the point of attention), unlike a 1x1 conv."""
    torch.manual_seed(0)
    attn = SelfAttention(8)
    with torch.no_grad():
        attn.gamma.fill_(1.0)
    x = torch.randn(1, 8, 8, 8, requires_grad=True)
    attn(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0, :, 7, 7].abs().sum() > 0


@pytest.mark.parametrize("arch", ["biggan", "sagan"])
def test_conditional_batch_norm_follows_the_class_only_through_its_gain_and_bias(arch):
    G, _ = tiny(arch)
    bn = G.blocks[0].bn1
    assert isinstance(bn, ConditionalBatchNorm2d)
    x = torch.randn(4, bn.bn.num_features, 4, 4)
    c_a, c_b = torch.full((4,), 1), torch.full((4,), 7)
    if arch == "biggan":  # [shared embedding, z chunk]: same z, two classes
        chunk = torch.randn(4, G.z_chunk)
        y_a, y_b = (torch.cat([G.shared(c), chunk], 1) for c in (c_a, c_b))
    else:                 # the class id itself, embedded by the BN
        y_a, y_b = c_a, c_b
    with torch.no_grad():
        out_a, out_b = bn(x, y_a), bn(x, y_b)
        assert not torch.allclose(out_a, out_b)
        x_hat = [(out - bn.bias(y)[:, :, None, None]) / (1 + bn.gain(y)[:, :, None, None])
                 for out, y in ((out_a, y_a), (out_b, y_b))]
    torch.testing.assert_close(x_hat[0], x_hat[1], atol=1e-5, rtol=1e-5)  # the same normalized x
    mean, std = x_hat[0].mean((0, 2, 3)), x_hat[0].var((0, 2, 3), unbiased=False).sqrt()
    torch.testing.assert_close(mean, torch.zeros_like(mean), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones_like(std), atol=1e-3, rtol=0)


@pytest.mark.parametrize("arch", FAMILIES)
def test_spectrally_normalized_layers_have_unit_largest_singular_value(arch):
    G, D = tiny(arch)
    c = torch.arange(4)
    for _ in range(5):  # training forwards advance the power iterations
        D(G(torch.randn(4, G.z_dim), c), c)
    layers = [m for net in (G, D) for m in net.modules() if isinstance(m, SpectralNorm)]
    assert any(isinstance(m.module, nn.Embedding) for m in layers)  # D's projection embedding
    picks = layers[:3] + layers[len(layers) // 2:len(layers) // 2 + 2] + layers[-3:]
    for m in picks:
        with torch.no_grad():
            w = m.module.weight / m.sigma()
        assert torch.linalg.matrix_norm(w.flatten(1), ord=2).item() == pytest.approx(1.0, abs=1e-2)


@pytest.mark.parametrize("init", ["ortho", "xavier", "normal"])
def test_init_schemes(init):
    G, _ = tiny("biggan", init=init)
    w = G.blocks[0].conv1.module.weight.detach().flatten(1)  # [8, 72]: orthonormal rows under ortho
    if init == "ortho":
        torch.testing.assert_close(w @ w.T, torch.eye(w.shape[0]), atol=1e-5, rtol=0)
    elif init == "normal":
        assert abs(w.std().item() - 0.02) < 0.01
    else:  # Xavier uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out)), fans 8 * 9 and 8 * 9
        bound = (6 / (72 + 72)) ** 0.5
        assert bound / 2 < w.abs().max().item() <= bound


# ----------------------------------------------------------------------------------------------
# forward

@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("num_classes,channels", [(10, 3), (0, 1), (10, 1)])
def test_forward_shapes_at_32(arch, num_classes, channels):
    G, D = tiny(arch, num_classes=num_classes, channels=channels)
    assert G.img_shape == (channels, 32, 32) and G.num_classes == num_classes
    z, c = torch.randn(3, G.z_dim), (torch.tensor([0, 4, 9]) if num_classes else None)
    img = G(z, c)
    assert img.shape == (3, channels, 32, 32) and img.abs().max() <= 1
    logits = D(img, c)
    assert logits.shape == (3,) and torch.isfinite(logits).all()
    logits.sum().backward()
    missing = [n for net in (G, D) for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


def test_biggan_without_hierarchical_z_and_unconditional_without_hier():
    for num_classes in (10, 0):
        G, _ = tiny("biggan", num_classes=num_classes, hier=False, dim_z=10)
        assert G.linear.module.in_features == 10 and G(torch.randn(2, 10), torch.arange(2)).shape == (2, 3, 32, 32)


def test_projection_term_depends_on_the_class_and_needs_it():
    G, D = tiny("biggan")
    D.eval()
    img = torch.randn(2, 3, 32, 32)
    a, b = D(img, torch.tensor([0, 0])), D(img, torch.tensor([3, 3]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="conditional: pass class labels c"):
        D(img)
    with pytest.raises(ValueError, match="conditional: pass class labels c"):
        G(torch.randn(2, G.z_dim))


def test_cross_replica_flag_selects_the_batch_norm():
    G, _ = tiny("biggan")
    assert type(G.blocks[0].bn1.bn) is CrossReplicaBatchNorm2d and type(G.out[0]) is CrossReplicaBatchNorm2d
    G, _ = tiny("biggan", cross_replica=False)
    assert type(G.blocks[0].bn1.bn) is nn.BatchNorm2d and type(G.out[0]) is nn.BatchNorm2d


@pytest.mark.parametrize("arch", FAMILIES)
def test_state_dict_round_trip_rebuilds_the_same_network(arch):
    G, D = tiny(arch)
    z, c = torch.randn(2, G.z_dim), torch.arange(2)
    G(z, c)  # a training forward: running stats and u, v move
    torch.manual_seed(1)
    G2 = GENERATORS.build(arch, dataclasses.asdict(G.cfg))
    G2.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert torch.equal(G.eval()(z, c), G2.eval()(z, c))


# ----------------------------------------------------------------------------------------------
# config errors: one line, naming the key

@pytest.mark.parametrize("arch,mapping,match", [
    ("biggan", {"resolution": 32, "attention": [64]}, "attention at 64: no block outputs 64x64"),
    ("biggan", {"resolution": 128, "dim_z": 128}, "dim_z 128 is not a multiple of 6"),
    ("biggan", {"resolution": 48}, "not allowed"),
    ("sagan", {"resolution": 32, "ch": 1, "attention": [16]}, "4 channels there"),
    ("biggan", {"init": "kaiming"}, "not allowed"),
])
def test_bad_configs_fail_in_one_line(arch, mapping, match):
    with pytest.raises(UserError, match=match) as e:
        GENERATORS.build(arch, mapping)
    assert "\n" not in str(e.value)


def test_d_config_errors_fail_in_one_line():
    with pytest.raises(UserError, match="D attention at 32"):
        DISCRIMINATORS.build("biggan", {"resolution": 32, "attention": [32]})
    with pytest.raises(UserError, match="bottleneck blocks need at least 4 channels"):
        DISCRIMINATORS.build("biggan_deep", {"resolution": 64, "ch": 1, "attention": []})
