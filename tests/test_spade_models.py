"""SPADE networks (hifigan/models/spade.py) and the SPADE layer (hifigan/nn/norms.py): NVlabs/SPADE's
parameter counts (built on the meta device), the label map reaching gamma / beta only locally, the
semantic input (one-hot + instance edges) on a hand example, the multiscale D's feature lists, G's
non-square outputs, the encoder's depth rule, and one-line errors for bad label maps and missing z."""
import pytest
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.models import count_params
from hifigan.models.spade import ConvEncoder, MultiscaleDiscriminator, SPADEGenerator, semantic_input
from hifigan.nn.norms import SPADE, CrossReplicaBatchNorm2d
from hifigan.nn.spectral import SpectralNorm
from hifigan.registry import DISCRIMINATORS, ENCODERS, GENERATORS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny ops: conftest's one intra-op thread

CITYSCAPES = dict(label_nc=35, instance=True, width=512, aspect_ratio=2.0)  # 35 labels + edges, 256x512
ADE20K = dict(label_nc=151, instance=False, width=256)                      # 150 classes + don't-care, 256x256
MNIST_G = dict(label_nc=11, instance=False, width=32, channels=1, ngf=16, num_upsampling_layers="normal")
MNIST_D = dict(label_nc=11, instance=False, width=32, channels=1, ndf=16, num_D=2, n_layers=3)


def meta_count(registry, arch, cfg) -> int:
    with torch.device("meta"):
        return count_params(registry.build(arch, cfg))


def labels(n, h, w, label_nc, instance=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, label_nc, (n, 1, h, w), generator=g)
    if instance:
        c = torch.cat([c, torch.randint(0, 3, (n, 1, h, w), generator=g)], 1)
    return c


# ----------------------------------------------------------------------------------------------
# sizes: NVlabs/SPADE's defaults (ngf = ndf = 64, norm_G spectralspadesyncbatch3x3, norm_D / norm_E
# spectralinstance, num_D 2, n_layers_D 4, z_dim 256)

@pytest.mark.parametrize("registry,arch,cfg,expected", [
    (GENERATORS, "spade", CITYSCAPES, 93_048_003),
    (DISCRIMINATORS, "spade_multiscale", CITYSCAPES, 5_601_410),
    (GENERATORS, "spade", ADE20K, 96_492_483),
    (DISCRIMINATORS, "spade_multiscale", ADE20K, 5_836_930),
    (GENERATORS, "spade", {**ADE20K, "use_vae": True}, 111_942_595),
    (ENCODERS, "spade_encoder", {}, 10_463_424),
], ids=["cityscapes_G", "cityscapes_D", "ade20k_G", "ade20k_D", "ade20k_G_vae", "encoder"])
def test_reference_parameter_counts(registry, arch, cfg, expected):
    assert meta_count(registry, arch, cfg) == expected


def test_defaults_are_ade20k():
    assert meta_count(GENERATORS, "spade", {}) == 96_492_483
    assert meta_count(DISCRIMINATORS, "spade_multiscale", {}) == 5_836_930


def test_num_upsampling_layers_changes_counts_only_through_the_extra_block():
    more = dict(CITYSCAPES, num_upsampling_layers="more")  # one more upsampling, no more weights
    assert meta_count(GENERATORS, "spade", more) == 93_048_003
    most = dict(CITYSCAPES, width=1024, num_upsampling_layers="most")
    # the extra block 64 -> 32: two SPADE-ResBlock convs, the 1x1 shortcut, three SPADEs; conv_img from 32
    spade = lambda c: 36 * 128 * 9 + 128 + 2 * (128 * c * 9 + c)  # noqa: E731
    block = 64 * 32 * 9 + 32 + 32 * 32 * 9 + 32 + 64 * 32 + spade(64) * 2 + spade(32)
    assert meta_count(GENERATORS, "spade", most) == 93_048_003 + block - (64 - 32) * 3 * 9


def test_our_spectral_norm_counts_parameters_like_torch():
    conv = nn.Conv2d(5, 7, 3)
    torch_sn = nn.utils.spectral_norm(nn.Conv2d(5, 7, 3))  # weight_orig + bias; u, v are buffers
    assert count_params(SpectralNorm(conv)) == count_params(torch_sn) == 5 * 7 * 9 + 7
    assert {n for n, _ in SpectralNorm(nn.Conv2d(5, 7, 3)).named_buffers()} == {"u", "v"}


def test_encoder_depth_follows_input_size():
    """log2(input_size / 4) stride-2 convs of ndf * min(2^k, 8) channels, then 4x4 -> two linear heads."""
    E = ENCODERS.build("spade_encoder", {"input_size": 32, "ndf": 4, "z_dim": 8, "channels": 1})
    convs = [m.module for m in E.modules() if isinstance(m, SpectralNorm)]
    assert [(c.in_channels, c.out_channels, c.stride, c.bias) for c in convs] == \
        [(1, 4, (2, 2), None), (4, 8, (2, 2), None), (8, 16, (2, 2), None)]
    assert E.fc_mu.in_features == 16 * 16
    mu, logvar = E(torch.randn(3, 1, 28, 28))  # resized to 32x32 first
    assert mu.shape == logvar.shape == (3, 8)
    big = ENCODERS.build("spade_encoder", {"input_size": 256, "ndf": 2, "z_dim": 8})
    assert [m.module.out_channels for m in big.modules() if isinstance(m, SpectralNorm)] == [2, 4, 8, 16, 16, 16]


# ----------------------------------------------------------------------------------------------
# semantic input and the SPADE layer

def test_semantic_input_one_hot_and_instance_edges_on_a_hand_example():
    lab = torch.tensor([[0, 0, 2],
                        [1, 1, 2]])
    inst = torch.tensor([[5, 5, 5],
                         [5, 7, 7]])
    c = torch.stack([lab, inst])[None]  # [1, 2, 2, 3]
    seg = semantic_input(c, label_nc=3, instance=True)
    assert seg.shape == (1, 4, 2, 3) and seg.dtype == torch.float32
    assert seg[0, 0].tolist() == [[1, 1, 0], [0, 0, 0]]
    assert seg[0, 1].tolist() == [[0, 0, 0], [1, 1, 0]]
    assert seg[0, 2].tolist() == [[0, 0, 1], [0, 0, 1]]
    # 1 where a 4-neighbour has another instance id (both sides of the boundary)
    assert seg[0, 3].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert semantic_input(c[:, :1], label_nc=3, instance=False).shape == (1, 3, 2, 3)


@pytest.mark.parametrize("bad,match", [(7, r"ids 0\.\.7, outside 0\.\.3 \(label_nc 4\)"), (-1, r"ids -1\.\.")])
def test_a_label_id_outside_label_nc_is_a_one_line_user_error(bad, match):
    c = labels(2, 8, 8, 4)
    c[1, 0, 3, 3] = bad
    G = GENERATORS.build("spade", dict(label_nc=4, width=32, ngf=2, spade_hidden=4))
    D = DISCRIMINATORS.build("spade_multiscale", dict(label_nc=4, width=32, ndf=2, n_layers=2))
    for call in (lambda: G(None, c), lambda: D(torch.zeros(2, 3, 8, 8), c)):
        with pytest.raises(UserError, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_a_label_map_of_the_wrong_shape_or_dtype_is_a_user_error():
    with pytest.raises(UserError, match=r"expected \[N, 2, H, W\]"):
        semantic_input(labels(1, 4, 4, 3), 3, instance=True)
    with pytest.raises(UserError, match="integer label ids"):
        semantic_input(labels(1, 4, 4, 3).float(), 3, instance=False)
    with pytest.raises(UserError, match="needs a label map"):
        semantic_input(None, 3, instance=False)


def test_spade_has_only_its_modulation_convs_and_a_parameter_free_norm():
    layer = SPADE(6, 5, hidden=8)
    assert isinstance(layer.norm, CrossReplicaBatchNorm2d) and not layer.norm.affine
    assert count_params(layer) == (5 * 8 * 9 + 8) + 2 * (8 * 6 * 9 + 6)
    x, seg = torch.randn(2, 6, 8, 8), semantic_input(labels(2, 16, 16, 5), 5, False)
    gamma, beta = layer.modulation(seg, (8, 8))
    assert torch.allclose(layer(x, seg), layer.norm(x) * (1 + gamma) + beta)


@pytest.mark.parametrize("seg_size", [16, 32])  # the label map at x's size, and at twice it (nearest)
def test_modulation_follows_the_label_map_locally(seg_size):
    """Relabelling a square changes gamma / beta inside it and within the two 3x3 convs' 2-pixel reach,
    and leaves every other pixel bit-identical."""
    torch.manual_seed(0)
    layer = SPADE(4, 5, hidden=8)
    s = seg_size // 16
    c = torch.zeros(1, 1, seg_size, seg_size, dtype=torch.long)
    c[..., 2 * s:5 * s, 3 * s:5 * s] = 1
    c2 = c.clone()
    c2[..., 8 * s:11 * s, 6 * s:10 * s] = 3  # the region, at x's 16x16 scale: rows 8..10, cols 6..9
    g1, b1 = layer.modulation(semantic_input(c, 5, False), (16, 16))
    g2, b2 = layer.modulation(semantic_input(c2, 5, False), (16, 16))
    near = torch.zeros(16, 16, dtype=torch.bool)
    near[8 - 2:11 + 2, 6 - 2:10 + 2] = True
    for a, b in ((g1, g2), (b1, b2)):
        assert torch.equal(a[..., ~near], b[..., ~near])
        assert (a[..., 8:11, 6:10] != b[..., 8:11, 6:10]).all(dim=1).all()  # every channel of the region changed


# ----------------------------------------------------------------------------------------------
# generator

@pytest.mark.parametrize("mode,width,aspect,shape", [("normal", 64, 2.0, (32, 64)),
                                                     ("more", 128, 2.0, (64, 128)),
                                                     ("most", 128, 1.0, (128, 128))])
def test_g_output_shape_and_range(mode, width, aspect, shape):
    torch.manual_seed(0)
    G = GENERATORS.build("spade", dict(label_nc=5, instance=True, width=width, aspect_ratio=aspect, ngf=2,
                                       spade_hidden=4, num_upsampling_layers=mode))
    assert G.img_shape == (3, *shape) and G.num_classes == 0 and G.z_dim == 256
    img = G(None, labels(2, *shape, 5, instance=True))
    assert img.shape == (2, 3, *shape)
    assert img.abs().max() <= 1 and img.std() > 0


def test_g_without_vae_ignores_z_and_with_vae_needs_it():
    torch.manual_seed(0)
    cfg = dict(label_nc=4, width=32, ngf=2, spade_hidden=4, z_dim=8)
    G = GENERATORS.build("spade", cfg).eval()
    c = labels(2, 32, 32, 4)
    assert torch.equal(G(None, c), G(torch.randn(2, 8), c))
    V = GENERATORS.build("spade", {**cfg, "use_vae": True}).eval()
    assert isinstance(V.fc, nn.Linear) and V.fc.out_features == 32 * 1 * 1
    with pytest.raises(UserError, match="use_vae: pass z") as e:
        V(None, c)
    assert "\n" not in str(e.value)
    z = torch.randn(2, 8)
    assert V(z, c).shape == (2, 3, 32, 32) and not torch.equal(V(z, c), V(torch.randn(2, 8), c))


def test_g_residual_convs_are_spectrally_normalized_and_first_and_last_are_not():
    G = GENERATORS.build("spade", dict(label_nc=4, width=32, ngf=2, spade_hidden=4))
    block = G.blocks[3]  # 16 ngf -> 8 ngf: learned shortcut
    assert all(isinstance(m, SpectralNorm) for m in (block.conv_0, block.conv_1, block.conv_s))
    assert block.conv_s.module.bias is None and block.conv_0.module.out_channels == 16
    assert type(G.fc) is nn.Conv2d and type(G.conv_img) is nn.Conv2d
    plain = GENERATORS.build("spade", dict(label_nc=4, width=32, ngf=2, spade_hidden=4, spectral=False))
    assert not any(isinstance(m, SpectralNorm) for m in plain.modules())
    assert count_params(plain) == count_params(G)


@pytest.mark.parametrize("cfg,match", [(dict(width=48), "multiples of 32 px"),
                                       (dict(width=64, aspect_ratio=3.0), "aspect_ratio 3"),
                                       (dict(num_upsampling_layers="some"), "num_upsampling_layers")])
def test_g_config_errors_are_one_line(cfg, match):
    with pytest.raises(UserError, match=match) as e:
        GENERATORS.build("spade", cfg)
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------------
# discriminator

def test_d_returns_num_d_lists_of_n_layers_plus_one_features():
    torch.manual_seed(0)
    D = DISCRIMINATORS.build("spade_multiscale", dict(label_nc=5, instance=True, width=64, aspect_ratio=2.0,
                                                      ndf=4, num_D=3, n_layers=4))
    assert D.num_classes == 0 and D.img_shape == (3, 32, 64)
    first = D.scales[0].layers[0][0]
    assert first.in_channels == 3 + 5 + 1
    out = D(torch.randn(2, 3, 32, 64), labels(2, 32, 64, 5, instance=True))
    assert len(out) == 3 and all(len(feats) == 5 for feats in out)
    # 4x4 convs, padding 2: stride 2 -> H // 2 + 1, stride 1 -> H + 1; scales avg-pooled 3x3 / 2 (pad 1)
    h, w = 32, 64
    for feats in out:
        sizes, (hh, ww) = [], (h, w)
        for stride in (2, 2, 2, 1, 1):
            hh, ww = (hh // 2 + 1, ww // 2 + 1) if stride == 2 else (hh + 1, ww + 1)
            sizes.append((hh, ww))
        assert [tuple(f.shape[2:]) for f in feats] == sizes
        assert [f.shape[1] for f in feats] == [4, 8, 16, 32, 1]
        h, w = (h + 1) // 2, (w + 1) // 2


def test_d_middle_convs_are_spectral_without_bias_and_instance_normalized():
    D = DISCRIMINATORS.build("spade_multiscale", dict(label_nc=3, width=32, ndf=4, num_D=1, n_layers=3))
    layers = D.scales[0].layers
    assert type(layers[0][0]) is nn.Conv2d and type(layers[-1][0]) is nn.Conv2d
    for seq in layers[1:-1]:
        assert isinstance(seq[0], SpectralNorm) and seq[0].module.bias is None
        assert isinstance(seq[1], nn.InstanceNorm2d) and not seq[1].affine


def test_d_refuses_a_label_map_of_another_size():
    D = DISCRIMINATORS.build("spade_multiscale", dict(label_nc=3, width=32, ndf=2, n_layers=2))
    with pytest.raises(UserError, match="label map is 16x16 but the image 32x32"):
        D(torch.zeros(1, 3, 32, 32), labels(1, 16, 16, 3))


# ----------------------------------------------------------------------------------------------
# the tiny MNIST recipe's sizes: one training-style step

def test_tiny_recipe_sizes_train_one_step():
    torch.manual_seed(0)
    G, D = GENERATORS.build("spade", MNIST_G), DISCRIMINATORS.build("spade_multiscale", MNIST_D)
    E = ENCODERS.build("spade_encoder", dict(channels=1, ndf=16, z_dim=16, input_size=32))
    assert isinstance(G, SPADEGenerator) and isinstance(D, MultiscaleDiscriminator) and isinstance(E, ConvEncoder)
    c, real = labels(8, 32, 32, 11), torch.rand(8, 1, 32, 32) * 2 - 1
    fake = G(None, c)
    out_fake, out_real = D(fake, c), D(real, c)
    feat = sum((a - b.detach()).abs().mean() for f, r in zip(out_fake, out_real) for a, b in zip(f[:-1], r[:-1]))
    loss = sum(-f[-1].mean() for f in out_fake) + feat
    loss.backward()
    assert all(p.grad is not None for p in G.parameters())
    mu, logvar = E(real)
    assert mu.shape == logvar.shape == (8, 16)
