"""BigGAN (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image Synthesis",
arXiv:1809.11096), with the layout of the authors' BigGAN-PyTorch (ch = 96 at 128x128 in the paper).

Generator: z is split into equal chunks ("hierarchical latent space", section 3.1): the first goes
through a spectrally normalized linear layer to a [16 ch, 4, 4] map, every residual block gets one
more chunk concatenated with a shared class embedding (not spectrally normalized). A block is
    x -> CBN -> ReLU -> 2x nearest up -> conv3x3 -> CBN -> ReLU -> conv3x3  (+ up -> conv1x1 shortcut)
with conditional batch norm (de Vries et al. 2017, arXiv:1707.00683) whose per-channel gain and bias
are bias-free spectrally normalized linear maps of [shared embedding, z chunk]. Self-attention
(SAGAN, Zhang et al. 2019, arXiv:1805.08318; hifigan/nn/attention.py) follows the block whose output
is at an `attention` resolution (64 in the paper). Output: BN -> ReLU -> conv3x3 -> tanh.

Discriminator: residual blocks conv3x3 -> ReLU -> conv3x3 (-> 2x2 average pool), pre-activated
(ReLU first) in every block but the first, widening to 16 ch, self-attention after the block at an
`attention` resolution, then ReLU, global sum pooling and a linear output plus the projection term
<embed(c), h> (Miyato & Koyama 2018, "cGANs with Projection Discriminator", arXiv:1802.05637).

Every conv, linear and embedding in both networks is spectrally normalized (Miyato et al. 2018,
arXiv:1802.05957) except G's shared embedding (BigGAN-PyTorch: SN there "seems to cripple G"); batch
norms in G are cross-replica (appendix C) when `cross_replica`; weights are orthogonal (section 3.1).
Parameter counts at 128x128, ch 96, 1000 classes: G 70,433,988, D 87,982,370.

SAGAN (hifigan/models/sagan.py) and BigGAN-deep (hifigan/models/biggan_deep.py) reuse the pieces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.attention import SelfAttention
from hifigan.nn.init import INIT_SCHEMES, init_weights
from hifigan.nn.norms import ConditionalBatchNorm2d, CrossReplicaBatchNorm2d
from hifigan.nn.spectral import SpectralNorm
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_RESOLUTION, MAX_WIDTH, bounded

RESOLUTIONS = (32, 64, 128, 256)  # the reference architecture tables
BOTTOM = 4                        # G's first feature map is BOTTOM x BOTTOM

# G: channel multipliers of ch per residual block (in, out); every block upsamples 2x.
# 32 is the CIFAR table (three blocks of 4 ch, as SN-GAN's ResNet); the others widen to 16 ch at 4x4.
G_MULTS = {32: ((4, 4, 4), (4, 4, 4)),
           64: ((16, 16, 8, 4), (16, 8, 4, 2)),
           128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
           256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1))}
# D: (input multipliers after the image, output multipliers, which blocks downsample)
D_MULTS = {32: ((4, 4, 4), (4, 4, 4, 4), (True, True, False, False)),
           64: ((1, 2, 4, 8), (1, 2, 4, 8, 16), (True,) * 4 + (False,)),
           128: ((1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 16), (True,) * 5 + (False,)),
           256: ((1, 2, 4, 8, 8, 16), (1, 2, 4, 8, 8, 16, 16), (True,) * 6 + (False,))}


# ----------------------------------------------------------------------------------------------
# Layers and layouts shared by BigGAN, BigGAN-deep and SAGAN

def sn_conv(c_in: int, c_out: int, kernel_size: int, eps: float, bias: bool = True) -> SpectralNorm:
    """Spectrally normalized conv, 'same' padding."""
    return SpectralNorm(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias), eps=eps)


def sn_linear(c_in: int, c_out: int, eps: float, bias: bool = True) -> SpectralNorm:
    return SpectralNorm(nn.Linear(c_in, c_out, bias=bias), eps=eps)


def batch_norm(channels: int, eps: float, cross_replica: bool, affine: bool = True) -> nn.BatchNorm2d:
    return (CrossReplicaBatchNorm2d if cross_replica else nn.BatchNorm2d)(channels, eps=eps, affine=affine)


class AffineBatchNorm(nn.Module):
    """Unconditional stand-in for a conditional BN (no class, no z chunk): learned gain and bias;
    takes (x, y) like ConditionalBatchNorm2d and ignores y."""

    def __init__(self, channels: int, eps: float, cross_replica: bool):
        super().__init__()
        self.bn = batch_norm(channels, eps, cross_replica)

    def forward(self, x: torch.Tensor, y=None) -> torch.Tensor:
        return self.bn(x)


class CondBNFactory:
    """Builds G's batch norms for one network: gain and bias are bias-free SN linear maps of a
    condition vector of `cond_dim` (BigGAN), or embeddings of the class id when cond_dim is 0 and
    the network is conditional (SAGAN), or learned constants when there is no condition at all."""

    def __init__(self, cond_dim: int, num_classes: int, sn_eps: float, bn_eps: float, cross_replica: bool):
        self.cond_dim, self.num_classes = cond_dim, num_classes
        self.sn_eps, self.bn_eps, self.cross_replica = sn_eps, bn_eps, cross_replica

    def __call__(self, channels: int) -> nn.Module:
        if self.cond_dim:
            gain, bias = (sn_linear(self.cond_dim, channels, self.sn_eps, bias=False) for _ in range(2))
        elif self.num_classes:
            gain, bias = nn.Embedding(self.num_classes, channels), nn.Embedding(self.num_classes, channels)
        else:
            return AffineBatchNorm(channels, self.bn_eps, self.cross_replica)
        return ConditionalBatchNorm2d(channels, gain, bias, eps=self.bn_eps, cross_replica=self.cross_replica)


def g_layout(resolution: int, ch: int, widths: list[int] | None = None) -> list[tuple[int, int, int]]:
    """(in channels, out channels, output resolution) of each G block; `widths` replaces the table's
    output multipliers (each block's input is the previous block's output)."""
    ins, outs = G_MULTS[resolution]
    if widths:
        if len(widths) != len(outs):
            raise ValueError(f"widths {list(widths)}: G at {resolution}x{resolution} has {len(outs)} blocks; "
                             f"give {len(outs)} multipliers")
        ins, outs = (widths[0], *widths[:-1]), tuple(widths)
    return [(ch * i, ch * o, BOTTOM * 2 ** (k + 1)) for k, (i, o) in enumerate(zip(ins, outs))]


def d_layout(resolution: int, ch: int, img_channels: int, widths: list[int] | None = None) -> list[tuple[int, int, bool, int]]:
    """(in channels, out channels, downsamples, output resolution) of each BigGAN / SAGAN D block;
    `widths` replaces the table's output multipliers."""
    ins, outs, downs = D_MULTS[resolution]
    if widths:
        if len(widths) != len(outs):
            raise ValueError(f"widths {list(widths)}: D at {resolution}x{resolution} has {len(outs)} blocks; "
                             f"give {len(outs)} multipliers")
        ins, outs = tuple(widths[:-1]), tuple(widths)
    ins = (img_channels,) + tuple(ch * i for i in ins)
    layout, res = [], resolution
    for c_in, o, down in zip(ins, outs, downs):
        res //= 2 if down else 1
        layout.append((c_in, ch * o, down, res))
    return layout


def attention_sites(out_res: list[int], channels: list[int], attention: list[int], net: str) -> dict[int, int]:
    """{block index: channels} for self-attention after the first block whose output is at each
    resolution in `attention`; ValueError (one line) for a resolution no block outputs or a width
    attention cannot split."""
    sites = {}
    for res in attention:
        if res not in out_res:
            raise ValueError(f"{net} attention at {res}: no block outputs {res}x{res} at this resolution "
                             f"(choose from {', '.join(map(str, sorted(set(out_res))))}, or [] for none)")
        i = out_res.index(res)
        if channels[i] < 8 or channels[i] % 8:
            raise ValueError(f"{net} attention at {res}: {channels[i]} channels there, attention needs a "
                             f"multiple of 8; raise ch")
        sites[i] = channels[i]
    return sites


def output_layer(channels: int, img_channels: int, sn_eps: float, bn_eps: float, cross_replica: bool) -> nn.Sequential:
    """G's BN -> ReLU -> conv3x3 -> tanh (the BN has its own learned gain and bias)."""
    return nn.Sequential(batch_norm(channels, bn_eps, cross_replica), nn.ReLU(),
                         sn_conv(channels, img_channels, 3, sn_eps), nn.Tanh())


def class_ids(c: torch.Tensor | None, num_classes: int, net: str) -> torch.Tensor | None:
    if not num_classes:
        return None
    if c is None:
        raise ValueError(f"this {net} is conditional: pass class labels c")
    return c.long()


def projection(h: torch.Tensor, linear: nn.Module, embed: nn.Module | None, c: torch.Tensor | None) -> torch.Tensor:
    """Pooled features h [N, C] -> logits [N]: linear(h) + <embed(c), h> (projection discriminator)."""
    out = linear(h).squeeze(1)
    if embed is not None:
        out = out + (embed(c) * h).sum(1)
    return out


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


# ----------------------------------------------------------------------------------------------
# Blocks

class GBlock(nn.Module):
    """[N, in, r, r] -> [N, out, 2r, 2r]: CBN -> ReLU -> up -> conv3x3 -> CBN -> ReLU -> conv3x3, plus
    the shortcut up -> conv1x1 (learned when channels change or the block upsamples)."""

    def __init__(self, c_in: int, c_out: int, make_bn: CondBNFactory, sn_eps: float, up: bool = True):
        super().__init__()
        self.up = up
        self.bn1, self.bn2 = make_bn(c_in), make_bn(c_out)
        self.conv1, self.conv2 = sn_conv(c_in, c_out, 3, sn_eps), sn_conv(c_out, c_out, 3, sn_eps)
        self.conv_sc = sn_conv(c_in, c_out, 1, sn_eps) if c_in != c_out or up else None

    def forward(self, x: torch.Tensor, y) -> torch.Tensor:
        h = F.relu(self.bn1(x, y))
        if self.up:
            h, x = upsample(h), upsample(x)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + (self.conv_sc(x) if self.conv_sc is not None else x)


class DBlock(nn.Module):
    """[N, in, r, r] -> [N, out, r/2 or r, .]: (ReLU ->) conv3x3 -> ReLU -> conv3x3 (-> avg pool 2x2),
    plus a conv1x1 shortcut (learned when channels change or the block downsamples). The first block
    (not pre-activated) pools before its shortcut conv, the others after (BigGAN-PyTorch's order;
    pooling first is cheaper where the input has only the image's channels)."""

    def __init__(self, c_in: int, c_out: int, sn_eps: float, preactivation: bool, down: bool):
        super().__init__()
        self.preactivation, self.down = preactivation, down
        self.conv1, self.conv2 = sn_conv(c_in, c_out, 3, sn_eps), sn_conv(c_out, c_out, 3, sn_eps)
        self.conv_sc = sn_conv(c_in, c_out, 1, sn_eps) if c_in != c_out or down else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv_sc is None:
            return F.avg_pool2d(x, 2) if self.down else x
        if self.preactivation:
            x = self.conv_sc(x)
            return F.avg_pool2d(x, 2) if self.down else x
        return self.conv_sc(F.avg_pool2d(x, 2) if self.down else x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.down:
            h = F.avg_pool2d(h, 2)
        return h + self.shortcut(x)


# ----------------------------------------------------------------------------------------------
# Configs shared by the families: fields every BigGAN-like G / D has

def resolution_choice():
    return field(default=128, metadata={"choices": RESOLUTIONS})


def attention_field():
    return bounded(default_factory=lambda: [64], ge=8, le=MAX_RESOLUTION)


def init_field(default: str):
    return field(default=default, metadata={"choices": INIT_SCHEMES})


@dataclass(kw_only=True)
class GeneratorFields:
    resolution: int = resolution_choice()                   # output H = W: 32 (CIFAR table), 64, 128 or 256
    ch: int = bounded(96, ge=1, le=MAX_WIDTH)               # channel multiplier (block widths are multiples of it)
    dim_z: int = bounded(120, ge=1, le=MAX_WIDTH)           # latent size
    num_classes: int = bounded(1000, ge=0, le=MAX_CLASSES)  # > 0: class-conditional (conditional BN); 0: unconditional
    channels: int = bounded(3, ge=1, le=MAX_CHANNELS)       # output image channels
    attention: list[int] = attention_field()                # self-attention after the block that outputs each of these resolutions
    sn_eps: float = bounded(1e-6, gt=0)                     # spectral norm's normalization epsilon
    bn_eps: float = bounded(1e-5, gt=0)                     # batch-norm epsilon
    cross_replica: bool = True                              # batch-norm statistics over the global batch (the backend's sum)
    init: str = init_field("ortho")                         # weight init: ortho (BigGAN), xavier (SAGAN), normal (N(0, 0.02))
    widths: Optional[list[int]] = None                      # per-block output multipliers of ch instead of the table's (small recipes)


@dataclass(kw_only=True)
class DiscriminatorFields:
    resolution: int = resolution_choice()                   # input H = W: 32 (CIFAR table), 64, 128 or 256
    ch: int = bounded(96, ge=1, le=MAX_WIDTH)               # channel multiplier
    num_classes: int = bounded(1000, ge=0, le=MAX_CLASSES)  # > 0: projection onto the class embedding; 0: unconditional
    channels: int = bounded(3, ge=1, le=MAX_CHANNELS)       # input image channels
    attention: list[int] = attention_field()                # self-attention after the first block that outputs each of these resolutions
    sn_eps: float = bounded(1e-6, gt=0)                     # spectral norm's normalization epsilon
    init: str = init_field("ortho")                         # weight init: ortho (BigGAN), xavier (SAGAN), normal (N(0, 0.02))
    widths: Optional[list[int]] = None                      # per-block output multipliers of ch instead of the table's (small recipes)


# ----------------------------------------------------------------------------------------------
# Generator

class ResNetGenerator(nn.Module):
    """BigGAN / SAGAN G. `shared_dim` > 0: a shared class embedding concatenated with z chunks feeds
    every CBN (BigGAN); 0: each CBN embeds the class id itself (SAGAN). `hier`: z split across the
    linear layer and the blocks; else all of z enters the linear layer."""

    def __init__(self, cfg: GeneratorFields, shared_dim: int, hier: bool):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.dim_z, cfg.num_classes
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        layout = g_layout(cfg.resolution, cfg.ch, cfg.widths)
        self.hier = hier
        self.z_chunk = cfg.dim_z // (len(layout) + 1) if hier else 0
        shared_dim = shared_dim if cfg.num_classes else 0
        self.shared = nn.Embedding(cfg.num_classes, shared_dim) if shared_dim else None
        make_bn = CondBNFactory(shared_dim + self.z_chunk, cfg.num_classes, cfg.sn_eps, cfg.bn_eps,
                                cfg.cross_replica)
        self.linear = sn_linear(self.z_chunk or cfg.dim_z, layout[0][0] * BOTTOM ** 2, cfg.sn_eps)
        self.blocks = nn.ModuleList(GBlock(c_in, c_out, make_bn, cfg.sn_eps) for c_in, c_out, _ in layout)
        sites = attention_sites([r for *_, r in layout], [c for _, c, _ in layout], cfg.attention, "G")
        self.attention = nn.ModuleDict({str(i): SelfAttention(c, sn_eps=cfg.sn_eps) for i, c in sites.items()})
        self.out = output_layer(layout[-1][1], cfg.channels, cfg.sn_eps, cfg.bn_eps, cfg.cross_replica)
        init_weights(self, cfg.init)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, embed: torch.Tensor | None = None) -> torch.Tensor:
        """z [N, dim_z], c [N] class ids -> img [N, channels, resolution, resolution] in [-1, 1].
        `embed` [N, shared_dim] replaces shared(c) (walks between classes; BigGAN's shared embedding only)."""
        if embed is not None:
            y = embed
        else:
            c = class_ids(c, self.num_classes, "generator")
            y = self.shared(c) if self.shared is not None else c  # [N, shared_dim] | class ids | None
        if self.hier:
            z, *chunks = z.split(self.z_chunk, dim=1)
            ys = [torch.cat([y, zi], 1) if self.shared is not None else zi for zi in chunks]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).view(z.shape[0], -1, BOTTOM, BOTTOM)  # [N, 16 ch, 4, 4]
        for i, (block, yi) in enumerate(zip(self.blocks, ys)):
            h = block(h, yi)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return self.out(h)


def check_hier(dim_z: int, resolution: int) -> None:
    slots = len(G_MULTS[resolution][0]) + 1
    if dim_z % slots:
        raise ValueError(f"hier splits dim_z into {slots} equal chunks at resolution {resolution} (the linear "
                         f"layer and {slots - 1} blocks): dim_z {dim_z} is not a multiple of {slots}")


def check_generator(cfg: GeneratorFields) -> None:
    """The checks a layout allows before building (one-line ValueErrors, ConfigErrors at build)."""
    layout = g_layout(cfg.resolution, cfg.ch, cfg.widths)
    attention_sites([r for *_, r in layout], [c for _, c, _ in layout], cfg.attention, "G")


@GENERATORS.register("biggan")
class BigGANGenerator(ResNetGenerator):
    """BigGAN G (Brock et al. 2019, arXiv:1809.11096), 128x128 ch 96 by default (70,433,988 parameters).
    z [N, dim_z] (+ c [N]) -> img [N, channels, resolution, resolution] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config(GeneratorFields):
        shared_dim: int = bounded(128, ge=1, le=MAX_WIDTH)  # shared class embedding size (conditional only)
        hier: bool = True                                   # hierarchical z: one chunk for the linear layer, one per block

        def __post_init__(self):
            check_generator(self)
            if self.hier:
                check_hier(self.dim_z, self.resolution)

    def __init__(self, cfg: Config):
        super().__init__(cfg, shared_dim=cfg.shared_dim, hier=cfg.hier)


# ----------------------------------------------------------------------------------------------
# Discriminator

def add_d_head(D: nn.Module, layout, cfg: DiscriminatorFields) -> None:
    """D's self-attention sites, output linear and SN class embedding (projection), then the init;
    shared by the BigGAN / SAGAN and BigGAN-deep discriminators."""
    sites = attention_sites([r for *_, r in layout], [c for _, c, *_ in layout], cfg.attention, "D")
    D.attention = nn.ModuleDict({str(i): SelfAttention(c, sn_eps=cfg.sn_eps) for i, c in sites.items()})
    width = layout[-1][1]
    D.linear = sn_linear(width, 1, cfg.sn_eps)
    D.embed = SpectralNorm(nn.Embedding(cfg.num_classes, width), eps=cfg.sn_eps) if cfg.num_classes else None
    init_weights(D, cfg.init)


class ResNetDiscriminator(nn.Module):
    """BigGAN / SAGAN D: img [N, channels, r, r] (+ c [N]) -> logits [N]."""

    def __init__(self, cfg: DiscriminatorFields):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        layout = d_layout(cfg.resolution, cfg.ch, cfg.channels, cfg.widths)
        self.blocks = nn.ModuleList(DBlock(c_in, c_out, cfg.sn_eps, preactivation=i > 0, down=down)
                                    for i, (c_in, c_out, down, _) in enumerate(layout))
        add_d_head(self, layout, cfg)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        c = class_ids(c, self.num_classes, "discriminator")
        h = img
        for i, block in enumerate(self.blocks):
            h = block(h)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        h = F.relu(h).sum(dim=(2, 3))  # [N, 16 ch]: global sum pooling
        return projection(h, self.linear, self.embed, c)


def check_discriminator(cfg: DiscriminatorFields) -> None:
    layout = d_layout(cfg.resolution, cfg.ch, cfg.channels, cfg.widths)
    attention_sites([r for *_, r in layout], [c for _, c, *_ in layout], cfg.attention, "D")


@DISCRIMINATORS.register("biggan")
class BigGANDiscriminator(ResNetDiscriminator):
    """BigGAN D (Brock et al. 2019, arXiv:1809.11096), 128x128 ch 96 by default (87,982,370 parameters).
    img [N, channels, resolution, resolution] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config(DiscriminatorFields):
        def __post_init__(self):
            check_discriminator(self)
