"""BigGAN-deep (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis", arXiv:1809.11096, appendix B, figure 16), with the layout of BigGAN-PyTorch (ch 128 at
128x128).

Four times as deep as BigGAN with bottleneck residual blocks (hidden width = 1/4 of the block's):
`depth` (2) blocks per resolution. G: z (not split) is concatenated with the shared class embedding;
that vector feeds the linear layer and every conditional BN. A G block is
    CBN -> ReLU -> conv1x1 (C -> C/4) -> CBN -> ReLU -> [up] -> conv3x3 -> CBN -> ReLU -> conv3x3
    -> CBN -> ReLU -> conv1x1 (C/4 -> out)
with a parameter-free skip: the first `out` channels of x, upsampled (appendix B: "we drop channels
... to the desired number"). Within a resolution every block but the last keeps its channels; the
last one changes them and upsamples. D: a 3x3 input conv, then blocks
    ReLU -> conv1x1 (in -> out/4) -> ReLU -> conv3x3 -> ReLU -> conv3x3 -> ReLU -> [avg pool]
    -> conv1x1 (out/4 -> out)
whose skip average-pools x and, where channels grow, concatenates x with a learned conv1x1 giving
the missing out - in channels (appendix B); the first block of a resolution downsamples and widens.
Self-attention follows the blocks of an `attention` resolution; the head is BigGAN's (ReLU, sum
pooling, linear + projection). Layers, init and spectral norm as hifigan/models/biggan.py.
Parameter counts at 128x128, ch 128, 1000 classes: G 50,244,484, D 34,590,210.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.models.biggan import (BOTTOM, CondBNFactory, add_d_head, DiscriminatorFields, GeneratorFields, attention_sites,
                                   class_ids, g_layout, output_layer, projection, sn_conv, sn_linear, upsample)
from hifigan.nn.attention import SelfAttention
from hifigan.nn.init import init_weights
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.schema import MAX_WIDTH, bounded

RATIO = 4  # bottleneck: a block's hidden width is its in (G) / out (D) channels over this

# D: (input multipliers of ch, output multipliers, which resolutions downsample); the 3x3 input conv
# maps the image to the first input width
D_MULTS = {32: ((4, 4, 4), (4, 4, 4), (True, True, False)),
           64: ((1, 2, 4, 8), (2, 4, 8, 16), (True,) * 4),
           128: ((1, 2, 4, 8, 16), (2, 4, 8, 16, 16), (True,) * 5),
           256: ((1, 2, 4, 8, 8, 16), (2, 4, 8, 8, 16, 16), (True,) * 6)}


def d_layout(resolution: int, ch: int) -> list[tuple[int, int, bool, int]]:
    """(in channels, out channels, downsamples, output resolution) of each D resolution group."""
    ins, outs, downs = D_MULTS[resolution]
    layout, res = [], resolution
    for i, o, down in zip(ins, outs, downs):
        res //= 2 if down else 1
        layout.append((ch * i, ch * o, down, res))
    return layout


def _check_bottleneck(widths: list[int], ch: int) -> None:
    if min(widths) < RATIO:
        raise ValueError(f"bottleneck blocks need at least {RATIO} channels (hidden = C / {RATIO}); "
                         f"raise ch (got {ch})")


class GBlockDeep(nn.Module):
    """[N, in, r, r] -> [N, out, r or 2r, .], out <= in: the bottleneck block with the channel-dropping skip."""

    def __init__(self, c_in: int, c_out: int, make_bn: CondBNFactory, sn_eps: float, up: bool):
        super().__init__()
        hidden = c_in // RATIO
        self.c_out, self.up = c_out, up
        self.bn1, self.bn2, self.bn3, self.bn4 = make_bn(c_in), make_bn(hidden), make_bn(hidden), make_bn(hidden)
        self.conv1 = sn_conv(c_in, hidden, 1, sn_eps)
        self.conv2, self.conv3 = sn_conv(hidden, hidden, 3, sn_eps), sn_conv(hidden, hidden, 3, sn_eps)
        self.conv4 = sn_conv(hidden, c_out, 1, sn_eps)

    def forward(self, x: torch.Tensor, y) -> torch.Tensor:
        h = F.relu(self.bn2(self.conv1(F.relu(self.bn1(x, y))), y))
        x = x[:, :self.c_out]  # the skip keeps the first out channels
        if self.up:
            h, x = upsample(h), upsample(x)
        h = self.conv3(F.relu(self.bn3(self.conv2(h), y)))
        return self.conv4(F.relu(self.bn4(h, y))) + x


class DBlockDeep(nn.Module):
    """[N, in, r, r] -> [N, out, r/2 or r, .], out >= in: the bottleneck block; skip = pool, then
    concat x with conv1x1(x) for the out - in new channels."""

    def __init__(self, c_in: int, c_out: int, sn_eps: float, down: bool):
        super().__init__()
        hidden = c_out // RATIO
        self.down = down
        self.conv1 = sn_conv(c_in, hidden, 1, sn_eps)
        self.conv2, self.conv3 = sn_conv(hidden, hidden, 3, sn_eps), sn_conv(hidden, hidden, 3, sn_eps)
        self.conv4 = sn_conv(hidden, c_out, 1, sn_eps)
        self.conv_sc = sn_conv(c_in, c_out - c_in, 1, sn_eps) if c_out != c_in else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv3(F.relu(self.conv2(F.relu(self.conv1(F.relu(x))))))
        h = F.relu(h)
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        if self.conv_sc is not None:
            x = torch.cat([x, self.conv_sc(x)], dim=1)
        return self.conv4(h) + x


@GENERATORS.register("biggan_deep")
class BigGANDeepGenerator(nn.Module):
    """BigGAN-deep G, 128x128 ch 128 by default (50,244,484 parameters).
    z [N, dim_z] (+ c [N]) -> img [N, channels, resolution, resolution] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config(GeneratorFields):
        ch: int = bounded(128, ge=1, le=MAX_WIDTH)          # channel multiplier (block widths are multiples of it)
        dim_z: int = bounded(128, ge=1, le=MAX_WIDTH)       # latent size; all of z joins the class embedding everywhere
        shared_dim: int = bounded(128, ge=1, le=MAX_WIDTH)  # shared class embedding size (conditional only)
        depth: int = bounded(2, ge=1, le=16)                # bottleneck blocks per resolution

        def __post_init__(self):
            if self.widths:
                raise ValueError("widths: biggan_deep keeps the reference table; use ch (or biggan / sagan for widths)")
            layout = g_layout(self.resolution, self.ch)
            _check_bottleneck([c for c, *_ in layout], self.ch)
            attention_sites([r for *_, r in layout], [c for _, c, _ in layout], self.attention, "G")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.dim_z, cfg.num_classes
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.shared = nn.Embedding(cfg.num_classes, cfg.shared_dim) if cfg.num_classes else None
        cond_dim = cfg.dim_z + (cfg.shared_dim if cfg.num_classes else 0)
        make_bn = CondBNFactory(cond_dim, cfg.num_classes, cfg.sn_eps, cfg.bn_eps, cfg.cross_replica)
        layout = g_layout(cfg.resolution, cfg.ch)
        self.linear = sn_linear(cond_dim, layout[0][0] * BOTTOM ** 2, cfg.sn_eps)
        self.blocks = nn.ModuleList()
        for c_in, c_out, _ in layout:
            last = cfg.depth - 1
            self.blocks.append(nn.ModuleList(GBlockDeep(c_in, c_out if d == last else c_in, make_bn, cfg.sn_eps,
                                                        up=d == last) for d in range(cfg.depth)))
        sites = attention_sites([r for *_, r in layout], [c for _, c, _ in layout], cfg.attention, "G")
        self.attention = nn.ModuleDict({str(i): SelfAttention(c, sn_eps=cfg.sn_eps) for i, c in sites.items()})
        self.out = output_layer(layout[-1][1], cfg.channels, cfg.sn_eps, cfg.bn_eps, cfg.cross_replica)
        init_weights(self, cfg.init)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, embed: torch.Tensor | None = None) -> torch.Tensor:
        """`embed` [N, shared_dim] replaces shared(c) (walks between classes)."""
        if embed is None and self.shared is not None:
            embed = self.shared(class_ids(c, self.num_classes, "generator"))
        y = z if embed is None else torch.cat([embed, z], dim=1)  # [N, shared_dim + dim_z]
        h = self.linear(y).view(z.shape[0], -1, BOTTOM, BOTTOM)  # [N, 16 ch, 4, 4]
        for i, group in enumerate(self.blocks):
            for block in group:
                h = block(h, y)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        return self.out(h)


@DISCRIMINATORS.register("biggan_deep")
class BigGANDeepDiscriminator(nn.Module):
    """BigGAN-deep D, 128x128 ch 128 by default (34,590,210 parameters).
    img [N, channels, resolution, resolution] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config(DiscriminatorFields):
        ch: int = bounded(128, ge=1, le=MAX_WIDTH)  # channel multiplier
        depth: int = bounded(2, ge=1, le=16)        # bottleneck blocks per resolution

        def __post_init__(self):
            if self.widths:
                raise ValueError("widths: biggan_deep keeps the reference table; use ch (or biggan / sagan for widths)")
            layout = d_layout(self.resolution, self.ch)
            _check_bottleneck([c for _, c, *_ in layout], self.ch)
            attention_sites([r for *_, r in layout], [c for _, c, *_ in layout], self.attention, "D")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        layout = d_layout(cfg.resolution, cfg.ch)
        self.input_conv = sn_conv(cfg.channels, layout[0][0], 3, cfg.sn_eps)
        self.blocks = nn.ModuleList(
            nn.ModuleList(DBlockDeep(c_in if d == 0 else c_out, c_out, cfg.sn_eps, down=down and d == 0)
                          for d in range(cfg.depth))
            for c_in, c_out, down, _ in layout)
        add_d_head(self, layout, cfg)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        c = class_ids(c, self.num_classes, "discriminator")
        h = self.input_conv(img)
        for i, group in enumerate(self.blocks):
            for block in group:
                h = block(h)
            if str(i) in self.attention:
                h = self.attention[str(i)](h)
        h = F.relu(h).sum(dim=(2, 3))  # [N, 16 ch]: global sum pooling
        return projection(h, self.linear, self.embed, c)
