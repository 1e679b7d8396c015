"""SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization",
arXiv:1903.07291): label map -> image, with the layout of the authors' code (NVlabs/SPADE), written
from the paper and checked against that code's parameter counts.

Semantic input: the label map as one-hot channels (the don't-care label, where the data has one, is
one of the `label_nc` channels), plus, when `instance`, an instance-edge channel: 1 where a pixel's
instance id differs from one of its 4 neighbours' (both sides of a boundary; pix2pixHD's edge map).
`semantic_input` builds it from the int64 label map both networks take as c.

Generator (section 3, figure 4): a 3x3 conv of the label map downsampled (nearest) to
[sh, sw] = [H, W] / 2^n, or with `use_vae` a linear map of z (the encoder's sample, section 3.3),
to 16 ngf channels; then SPADE residual blocks 16, 16, 16, 8, 4, 2, 1 (x ngf) with a 2x nearest
upsampling before all but the first (n = 5 upsamplings, "normal"; "more" adds one between the two
middle blocks, "most" one more and a last block to ngf / 2). A block is
    x -> SPADE -> LReLU(0.2) -> conv3x3 (to min(in, out)) -> SPADE -> LReLU -> conv3x3 (to out)
plus the shortcut SPADE -> conv1x1 (no bias) when the width changes; its convs are spectrally
normalized (`spectral`, the code's norm_G spectralspadesyncbatch3x3). Each SPADE (hifigan/nn/norms.py)
is a parameter-free synchronized batch norm modulated per pixel by convs of the resized label map.
Output: LReLU(0.2) -> conv3x3 -> tanh.

Discriminator: pix2pixHD's multiscale PatchGAN (Wang et al. 2018, arXiv:1711.11585) on [semantic
input, image]: `num_D` copies, each seeing the input average-pooled (3x3, stride 2) once more than
the last; each is a 4x4 conv (stride 2) + LReLU, `n_layers` - 1 spectrally normalized 4x4 convs
(doubling to at most 512 channels, stride 2 but the last, stride 1) without bias, each with a
parameter-free instance norm + LReLU, and a 4x4 conv to one channel of patch logits. It returns every
layer's output (feature matching, section 4 / pix2pixHD).

Encoder (section 3.3, appendix): stride-2 3x3 convs (spectral norm, no bias, instance norm, LReLU)
down to 4x4 and two linear heads for mu and log-variance.

Weights: Xavier normal with gain 0.02, biases 0 (the code's default init); every conv and linear.
Parameter counts (ngf = ndf = 64): Cityscapes (35 labels + instance edges, 256x512) G 93,048,003,
D 5,601,410; ADE20K (151 labels with don't-care, 256x256) G 96,492,483, D 5,836,930, with use_vae
G 111,942,595 and the encoder (256x256 input) 10,463,424.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.errors import UserError
from hifigan.nn.norms import SPADE
from hifigan.nn.spectral import SpectralNorm
from hifigan.registry import DISCRIMINATORS, ENCODERS, GENERATORS
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_LAYERS, MAX_RESOLUTION, MAX_WIDTH, bounded

UPSAMPLINGS = {"normal": 5, "more": 6, "most": 7}  # G's 2x upsamplings from the first map to the image
D_MAX_CHANNELS = 512                               # the PatchGAN's width stops doubling here
LRELU = 0.2                                        # leaky ReLU slope in all three networks
ENCODER_BOTTOM = 4                                 # the encoder's last map is 4x4


# ----------------------------------------------------------------------------------------------
# The semantic input and shared layers

def instance_edges(inst: torch.Tensor) -> torch.Tensor:
    """inst [N, 1, H, W] instance ids -> bool [N, 1, H, W]: True where a 4-neighbour's id differs."""
    edge = torch.zeros(inst.shape, dtype=torch.bool, device=inst.device)
    dx = inst[..., :, 1:] != inst[..., :, :-1]  # [N, 1, H, W - 1]
    dy = inst[..., 1:, :] != inst[..., :-1, :]  # [N, 1, H - 1, W]
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return edge


def semantic_input(c: torch.Tensor, label_nc: int, instance: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Label map c -> the networks' semantic input [N, label_nc + instance, H, W] of `dtype`.

    c: int64 [N, 1, H, W] of label ids in 0 .. label_nc - 1, or [N, 2, H, W] with the instance ids
    in channel 1 when `instance`. Channels: one-hot labels, then the instance-edge map."""
    want = 2 if instance else 1
    if c is None:
        raise UserError(f"SPADE needs a label map c [N, {want}, H, W] (int64 label ids"
                        f"{', then instance ids' if instance else ''}); the data must provide one")
    if c.dim() != 4 or c.shape[1] != want:
        raise UserError(f"SPADE label map c has shape {list(c.shape)}; expected [N, {want}, H, W] "
                        f"({'label ids, instance ids' if instance else 'label ids'}; instance: {str(instance).lower()})")
    if c.is_floating_point() or c.is_complex():
        raise UserError(f"SPADE label map c has dtype {c.dtype}; give integer label ids (int64)")
    labels = c[:, :1].long()
    lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
    if lo < 0 or hi >= label_nc:
        raise UserError(f"SPADE label map has ids {lo}..{hi}, outside 0..{label_nc - 1} (label_nc {label_nc}): "
                        f"set label_nc to the number of labels, the don't-care label included, or remap the ids")
    n, _, h, w = c.shape
    seg = torch.zeros(n, label_nc, h, w, dtype=dtype, device=c.device).scatter_(1, labels, 1.0)
    if instance:
        seg = torch.cat([seg, instance_edges(c[:, 1:2]).to(dtype)], dim=1)
    return seg


def init_spade(net: nn.Module, gain: float) -> None:
    """The reference code's default init: Xavier normal (gain 0.02) weights, zero biases, every
    conv and linear (spectrally normalized ones too; their power iteration restarts)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in net.modules():
        if isinstance(m, SpectralNorm):
            m.reestimate_()


def maybe_sn(layer: nn.Module, spectral: bool) -> nn.Module:
    return SpectralNorm(layer) if spectral else layer


def image_size(width: int, aspect_ratio: float) -> tuple[int, int]:
    """(H, W) of an image `width` wide with width / height = aspect_ratio."""
    return max(1, round(width / aspect_ratio)), width


# ----------------------------------------------------------------------------------------------
# Generator

class SPADEResBlock(nn.Module):
    """[N, in, H, W], seg -> [N, out, H, W]: SPADE -> LReLU -> conv3x3 -> SPADE -> LReLU -> conv3x3,
    middle width min(in, out), plus SPADE -> conv1x1 (no bias) as the shortcut when in != out."""

    def __init__(self, c_in: int, c_out: int, label_channels: int, hidden: int, spectral: bool,
                 cross_replica: bool, up: bool):
        super().__init__()
        self.up = up  # 2x nearest upsampling of the input first
        mid = min(c_in, c_out)
        self.norm_0 = SPADE(c_in, label_channels, hidden, cross_replica=cross_replica)
        self.conv_0 = maybe_sn(nn.Conv2d(c_in, mid, 3, padding=1), spectral)
        self.norm_1 = SPADE(mid, label_channels, hidden, cross_replica=cross_replica)
        self.conv_1 = maybe_sn(nn.Conv2d(mid, c_out, 3, padding=1), spectral)
        self.norm_s = self.conv_s = None
        if c_in != c_out:
            self.norm_s = SPADE(c_in, label_channels, hidden, cross_replica=cross_replica)
            self.conv_s = maybe_sn(nn.Conv2d(c_in, c_out, 1, bias=False), spectral)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        seg = F.interpolate(seg, size=x.shape[2:], mode="nearest")  # once for the block's three SPADEs
        skip = x if self.conv_s is None else self.conv_s(self.norm_s(x, seg))
        h = self.conv_0(F.leaky_relu(self.norm_0(x, seg), LRELU))
        h = self.conv_1(F.leaky_relu(self.norm_1(h, seg), LRELU))
        return skip + h


def g_layout(ngf: int, num_upsampling_layers: str) -> list[tuple[int, int, bool]]:
    """(in channels, out channels, upsamples first) of each residual block."""
    n = UPSAMPLINGS[num_upsampling_layers]
    mults = [(16, 16, False), (16, 16, True), (16, 16, n >= 6), (16, 8, True), (8, 4, True), (4, 2, True),
             (2, 1, True)]
    layout = [(ngf * i, ngf * o, up) for i, o, up in mults]
    if n == 7:
        layout.append((ngf, ngf // 2, True))
    return layout


def latent_size(width: int, aspect_ratio: float, num_upsampling_layers: str) -> tuple[int, int]:
    """(sh, sw): the first feature map's size; ValueError (one line) unless the image is that times 2^n."""
    n = UPSAMPLINGS[num_upsampling_layers]
    sw = width // 2 ** n
    sh = round(sw / aspect_ratio)
    height, _ = image_size(width, aspect_ratio)
    if sw < 1 or sh < 1 or sw * 2 ** n != width or sh * 2 ** n != height:
        raise ValueError(f"SPADE G with num_upsampling_layers {num_upsampling_layers} ({n} upsamplings) makes "
                         f"images of multiples of {2 ** n} px: width {width} and height {height} (width / "
                         f"aspect_ratio {aspect_ratio:g}) must both be; change width or aspect_ratio")
    return sh, sw


@dataclass(kw_only=True)
class SemanticFields:
    """What both networks need to know about the label map and the image."""
    label_nc: int = bounded(151, ge=1, le=MAX_CLASSES)               # one-hot label channels, don't-care included (ADE20K 150 + 1)
    instance: bool = False                                           # c carries instance ids: add the instance-edge channel
    width: int = bounded(256, ge=1, le=MAX_RESOLUTION)               # image width W
    aspect_ratio: float = bounded(1.0, gt=0, le=MAX_RESOLUTION)      # W / H (Cityscapes: 2.0)
    channels: int = bounded(3, ge=1, le=MAX_CHANNELS)                # image channels


@GENERATORS.register("spade")
class SPADEGenerator(nn.Module):
    """SPADE G (Park et al. 2019, arXiv:1903.07291), ADE20K's 256x256 with 151 labels by default
    (96,492,483 parameters). z [N, z_dim] (use_vae only; else ignored), c label map -> img [N, channels, H, W]."""

    @dataclass(kw_only=True)
    class Config(SemanticFields):
        ngf: int = bounded(64, ge=1, le=MAX_WIDTH)                   # base width: blocks of 16, 8, 4, 2, 1 x ngf channels
        z_dim: int = bounded(256, ge=1, le=MAX_WIDTH)                # latent size (use_vae: the encoder's z)
        use_vae: bool = False                                        # start from linear(z) (encoder's z: multimodal), not the map
        num_upsampling_layers: str = field(default="normal", metadata={"choices": tuple(UPSAMPLINGS)})  # 5/6/7 ups; most: +block
        spade_hidden: int = bounded(128, ge=1, le=MAX_WIDTH)         # width of SPADE's shared conv on the label map
        spectral: bool = True                                        # spectral norm on the residual blocks' convs
        cross_replica: bool = True                                   # SPADE's BN statistics over the global batch (sync BN)
        init_gain: float = bounded(0.02, gt=0)                       # Xavier normal gain of every weight

        def __post_init__(self):
            latent_size(self.width, self.aspect_ratio, self.num_upsampling_layers)
            if self.num_upsampling_layers == "most" and self.ngf < 2:
                raise ValueError("num_upsampling_layers most ends with ngf / 2 channels: ngf must be >= 2")

    num_classes = 0  # conditioned on a label map, not on a class id

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.label_nc, self.instance, self.use_vae, self.z_dim = cfg.label_nc, cfg.instance, cfg.use_vae, cfg.z_dim
        self.img_shape = (cfg.channels, *image_size(cfg.width, cfg.aspect_ratio))
        self.sh, self.sw = latent_size(cfg.width, cfg.aspect_ratio, cfg.num_upsampling_layers)
        sem = cfg.label_nc + int(cfg.instance)
        top = 16 * cfg.ngf
        if cfg.use_vae:
            self.fc = nn.Linear(cfg.z_dim, top * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(sem, top, 3, padding=1)
        layout = g_layout(cfg.ngf, cfg.num_upsampling_layers)
        self.blocks = nn.ModuleList(SPADEResBlock(c_in, c_out, sem, cfg.spade_hidden, cfg.spectral, cfg.cross_replica, up)
                                    for c_in, c_out, up in layout)
        self.conv_img = nn.Conv2d(layout[-1][1], cfg.channels, 3, padding=1)
        init_spade(self, cfg.init_gain)

    def forward(self, z: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim] (use_vae) or None, c [N, 1 + instance, h, w] int64 -> img [N, channels, H, W] in [-1, 1]."""
        seg = semantic_input(c, self.label_nc, self.instance)  # [N, label_nc + instance, h, w]
        if self.use_vae:
            if z is None:
                raise UserError("this SPADE G has use_vae: pass z [N, z_dim] (the encoder's sample, or N(0, I) noise)")
            x = self.fc(z).view(z.shape[0], -1, self.sh, self.sw)
        else:
            x = self.fc(F.interpolate(seg, size=(self.sh, self.sw), mode="nearest"))  # [N, 16 ngf, sh, sw]
        for block in self.blocks:
            x = block(x, seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, LRELU)))


# ----------------------------------------------------------------------------------------------
# Discriminator

class PatchDiscriminator(nn.Module):
    """pix2pixHD's n-layer PatchGAN: [N, in, H, W] -> the outputs of its n_layers + 1 layers, the last
    being [N, 1, h, w] patch logits."""

    def __init__(self, c_in: int, ndf: int, n_layers: int):
        super().__init__()
        k, pad = 4, 2
        layers = [nn.Sequential(nn.Conv2d(c_in, ndf, k, stride=2, padding=pad), nn.LeakyReLU(LRELU))]
        width = ndf
        for i in range(1, n_layers):
            prev, width = width, min(width * 2, D_MAX_CHANNELS)
            stride = 1 if i == n_layers - 1 else 2
            # no bias: the instance norm right after removes it
            conv = SpectralNorm(nn.Conv2d(prev, width, k, stride=stride, padding=pad, bias=False))
            layers.append(nn.Sequential(conv, nn.InstanceNorm2d(width, affine=False), nn.LeakyReLU(LRELU)))
        layers.append(nn.Sequential(nn.Conv2d(width, 1, k, stride=1, padding=pad)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


@DISCRIMINATORS.register("spade_multiscale")
class MultiscaleDiscriminator(nn.Module):
    """SPADE's D (pix2pixHD's multiscale PatchGAN), ADE20K's 151 labels by default (5,836,930 parameters).
    img [N, channels, H, W], c label map -> num_D lists (full size first) of n_layers + 1 feature maps."""

    @dataclass(kw_only=True)
    class Config(SemanticFields):
        ndf: int = bounded(64, ge=1, le=MAX_WIDTH)                   # first layer's width; doubled per layer up to 512
        num_D: int = bounded(2, ge=1, le=MAX_LAYERS)                 # scales: each D sees the input pooled once more
        n_layers: int = bounded(4, ge=1, le=MAX_LAYERS)              # 4x4 convs before the logit conv (3 of stride 2 at 4)
        init_gain: float = bounded(0.02, gt=0)                       # Xavier normal gain of every weight

    num_classes = 0  # conditioned on a label map, not on a class id

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.label_nc, self.instance = cfg.label_nc, cfg.instance
        self.img_shape = (cfg.channels, *image_size(cfg.width, cfg.aspect_ratio))
        c_in = cfg.label_nc + int(cfg.instance) + cfg.channels
        self.scales = nn.ModuleList(PatchDiscriminator(c_in, cfg.ndf, cfg.n_layers) for _ in range(cfg.num_D))
        init_spade(self, cfg.init_gain)

    def forward(self, img: torch.Tensor, c: torch.Tensor) -> list[list[torch.Tensor]]:
        """img [N, channels, H, W], c [N, 1 + instance, H, W] int64 -> [[features of scale s] for s in 0..num_D-1]."""
        if c is not None and c.dim() == 4 and img.dim() == 4 and c.shape[2:] != img.shape[2:]:
            raise UserError(f"SPADE D: the label map is {c.shape[2]}x{c.shape[3]} but the image {img.shape[2]}x"
                            f"{img.shape[3]}; they must be the same size")
        x = torch.cat([semantic_input(c, self.label_nc, self.instance, img.dtype), img], dim=1)  # the reference's order
        out = []
        for i, D in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(D(x))
        return out


# ----------------------------------------------------------------------------------------------
# Encoder

@ENCODERS.register("spade_encoder")
class ConvEncoder(nn.Module):
    """SPADE's image encoder (section 3.3): img [N, channels, H, W] -> (mu, logvar), each [N, z_dim].

    The image is resized (bilinear) to input_size x input_size, then log2(input_size / 4) stride-2
    3x3 convs take it to 4x4; conv k (from 0) has ndf * min(2^k, 8) channels. At the reference's 256
    that is its six convs (ndf x 1, 2, 4, 8, 8, 8; 10,463,424 parameters at ndf 64); at 32, three."""

    @dataclass(kw_only=True)
    class Config:
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)            # image channels
        ndf: int = bounded(64, ge=1, le=MAX_WIDTH)                   # first conv's width (the reference uses its ngf, 64)
        z_dim: int = bounded(256, ge=1, le=MAX_WIDTH)                # latent size; must equal G.z_dim
        input_size: int = bounded(256, ge=8, le=MAX_RESOLUTION, pow2=True)  # images are resized to this square first
        init_gain: float = bounded(0.02, gt=0)                       # Xavier normal gain of every weight

    num_classes = 0  # q(z | x) looks at the image alone

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        n = int(math.log2(cfg.input_size // ENCODER_BOTTOM))
        convs, prev = [], cfg.channels
        for k in range(n):
            width = cfg.ndf * min(2 ** k, 8)
            conv = SpectralNorm(nn.Conv2d(prev, width, 3, stride=2, padding=1, bias=False))
            convs += [conv, nn.InstanceNorm2d(width, affine=False), nn.LeakyReLU(LRELU)]
            prev = width
        self.trunk = nn.Sequential(*convs)
        flat = prev * ENCODER_BOTTOM ** 2
        self.fc_mu = nn.Linear(flat, cfg.z_dim)
        self.fc_var = nn.Linear(flat, cfg.z_dim)
        init_spade(self, cfg.init_gain)

    def forward(self, img: torch.Tensor, c=None) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.cfg.input_size
        if img.shape[2:] != (s, s):
            img = F.interpolate(img, size=(s, s), mode="bilinear", align_corners=False)
        h = self.trunk(img).flatten(1)  # [N, 16 * last width]
        return self.fc_mu(h), self.fc_var(h)
