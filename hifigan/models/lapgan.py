"""LAPGAN (Denton et al. 2015, "Deep Generative Image Models using a Laplacian Pyramid of Adversarial
Networks", arXiv:1506.05751).

A Laplacian pyramid (hifigan/nn/pyramid.py) of `levels` levels, numbered from the coarsest (level 0,
resolution / 2**(levels-1)) to the finest (level levels-1, the output resolution). Level 0's
generator maps noise z_0 (and the class) to the coarsest image: an MLP, as the paper's CIFAR-10 base
(two hidden ReLU layers), or (base: conv, beyond the paper) a linear layer and a transposed conv.
Every finer level k has a small convnet that takes the coarser image upsampled, l_k = u(I_{k-1}),
with its own noise as extra planes (the paper's "4th colour plane") and makes the band-pass image
h_k, so I_k = l_k + h_k (section 3). Class conditioning (section 4): the one-hot class joins z_0, and
at each finer level a linear layer turns it into one more plane.

The discriminators mirror this, one per level: an MLP with dropout (or a small convnet) on the
coarsest image, and at each finer level a convnet on the band-pass image together with its
conditioning image (concatenated as channels; the paper adds l_k to h_k, which a first convolution
can still form).

Sampling G(z, c) runs the whole pyramid, coarsest first; training (hifigan/objectives/lapgan.py)
trains the levels independently, each finer level conditioned on the real image's coarse version:
G(z, c, coarse={k: l_k or None}) returns only those levels' outputs, and D({k: (x, l_k)}, c) their
logits, so a phase calls each network once (one DDP forward) whatever set of levels it trains.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.init import dcgan_init
from hifigan.nn.pyramid import check_levels, upsample
from hifigan.registry import DISCRIMINATORS, GENERATORS
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_LAYERS, MAX_WIDTH, bounded, resolution_field

Levels = dict[int, typing.Any]  # level -> a tensor (or tuple), level 0 = the coarsest


def level_resolutions(resolution: int, levels: int) -> list[int]:
    """Each level's image side, coarsest first: [resolution / 2**(levels-1), ..., resolution]."""
    check_levels(resolution, levels)
    return [resolution >> (levels - 1 - k) for k in range(levels)]


def check_widths(widths: list[int], levels: int, what: str) -> None:
    if len(widths) != levels - 1:
        raise ValueError(f"{what} has {len(widths)} entries but {levels} levels have {levels - 1} finer levels; "
                         f"give one width per finer level, coarse to fine")


def mlp(sizes: list[int], act, dropout: float = 0.0, batch_norm: bool = False) -> list[nn.Module]:
    """Linear layers between `sizes`, each but the last followed by (batch norm,) act (and dropout)."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(b)] if batch_norm else []
            layers += [act()] + ([nn.Dropout(dropout)] if dropout else [])
    return layers


class ClassPlane(nn.Module):
    """c [N] -> one [N, 1, r, r] feature plane through a linear layer (the paper's conditioning of G_k, D_k)."""

    def __init__(self, num_classes: int, resolution: int):
        super().__init__()
        self.num_classes, self.resolution = num_classes, resolution
        self.linear = nn.Linear(num_classes, resolution * resolution)

    def forward(self, c: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        y = F.one_hot(c.long(), self.num_classes).to(like.dtype)
        return self.linear(y).view(-1, 1, self.resolution, self.resolution)


def _classes(c, num_classes: int, net: str):
    if num_classes and c is None:
        raise ValueError(f"this {net} is conditional: pass class labels c")
    return c if num_classes else None


BASES = ("mlp", "conv")  # the coarsest level's networks


def check_base(base: str, hidden: list[int], r0: int) -> None:
    if base not in BASES:
        raise ValueError(f"base: {base!r} is not allowed (choose from {', '.join(BASES)})")
    if base == "conv" and (len(hidden) < 2 or r0 % 2 or r0 < 4):
        raise ValueError(f"base conv needs base_hidden with at least 2 channel counts and an even coarsest side >= 4 "
                         f"(got {list(hidden)} and {r0}); lower levels or use base: mlp")


class BaseGenerator(nn.Module):
    """Level 0: (z_0 [N, z], c) -> the coarsest image [N, C, r, r] in [-1, 1]. mlp: fully connected layers of
    `hidden` units (the paper's CIFAR-10 G_K). conv: a linear layer to a [hidden[0], r/2, r/2] map, a 4x4
    stride-2 transposed conv to [hidden[1], r, r], 3x3 convs through the other widths, a 3x3 conv to C."""

    def __init__(self, kind: str, z_dim: int, hidden: list[int], channels: int, resolution: int, num_classes: int,
                 batch_norm: bool):
        super().__init__()
        self.num_classes, self.shape = num_classes, (channels, resolution, resolution)
        z_in = z_dim + num_classes
        if kind == "mlp":
            self.net = nn.Sequential(*mlp([z_in, *hidden, channels * resolution ** 2], nn.ReLU, batch_norm=batch_norm))
            return
        half = resolution // 2

        def bn_relu(c, dims=2):
            return ([(nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c)] if batch_norm else []) + [nn.ReLU()]
        layers = [nn.Linear(z_in, hidden[0] * half * half), *bn_relu(hidden[0] * half * half, 1),
                  nn.Unflatten(1, (hidden[0], half, half)), nn.ConvTranspose2d(hidden[0], hidden[1], 4, 2, 1),
                  *bn_relu(hidden[1])]
        for a, b in zip(hidden[1:-1], hidden[2:]):
            layers += [nn.Conv2d(a, b, 3, 1, 1), *bn_relu(b)]
        self.net = nn.Sequential(*layers, nn.Conv2d(hidden[-1], channels, 3, 1, 1))

    def forward(self, z, c=None):
        if c is not None:
            z = torch.cat([z, F.one_hot(c.long(), self.num_classes).to(z.dtype)], 1)
        return torch.tanh(self.net(z).view(len(z), *self.shape))


class BaseDiscriminator(nn.Module):
    """Level 0: (the coarsest image [N, C, r, r], c) -> logits [N]. mlp: fully connected LeakyReLU(0.2) layers with
    dropout on the flattened image (+ one-hot class; the paper's D_K). conv: a 3x3 conv to hidden[0] channels,
    4x4 stride-2 convs through the other widths (class as one more input plane), dropout, a linear layer."""

    def __init__(self, kind: str, hidden: list[int], channels: int, resolution: int, num_classes: int,
                 dropout: float):
        super().__init__()
        self.kind, self.num_classes = kind, num_classes
        if kind == "mlp":
            self.net = nn.Sequential(*mlp([channels * resolution ** 2 + num_classes, *hidden, 1],
                                          lambda: nn.LeakyReLU(0.2), dropout=dropout))
            return
        self.plane = ClassPlane(num_classes, resolution) if num_classes else None
        layers = [nn.Conv2d(channels + (1 if num_classes else 0), hidden[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        side = resolution
        for a, b in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
            side //= 2
        layers += [nn.Flatten()] + ([nn.Dropout(dropout)] if dropout else [])
        self.net = nn.Sequential(*layers, nn.Linear(hidden[-1] * side * side, 1))

    def forward(self, x, c=None):
        if self.kind == "mlp":
            h = x.flatten(1)
            if c is not None:
                h = torch.cat([h, F.one_hot(c.long(), self.num_classes).to(h.dtype)], 1)
            return self.net(h).flatten()
        if self.plane is not None:
            x = torch.cat([x, self.plane(c, x)], 1)
        return self.net(x).flatten()


class BandPassGenerator(nn.Module):
    """Finer level k: (l_k [N, C, r, r], noise [N, P, r, r], c) -> h_k [N, C, r, r]: three 3x3 convs,
    batch norm and ReLU between them, a linear output (a band-pass image is signed and unbounded)."""

    def __init__(self, channels: int, noise_planes: int, width: int, resolution: int, num_classes: int,
                 batch_norm: bool):
        super().__init__()
        self.plane = ClassPlane(num_classes, resolution) if num_classes else None
        c_in = channels + noise_planes + (1 if num_classes else 0)
        layers = []
        for a in (c_in, width):
            layers += [nn.Conv2d(a, width, 3, 1, 1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(width)] if batch_norm else []
            layers += [nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Conv2d(width, channels, 3, 1, 1))

    def forward(self, coarse, noise, c=None):
        x = [coarse, noise] + ([self.plane(c, coarse)] if self.plane is not None else [])
        return self.net(torch.cat(x, dim=1))


@GENERATORS.register("lapgan")
class LAPGANGenerator(nn.Module):
    """z [N, z_dim] (+ c [N]) -> img [N, channels, resolution, resolution] in [-1, 1], through every level.

    z is split coarsest first: z_dim entries for the base, then noise_planes * r_k**2 per finer
    level k (reshaped to its noise planes); `G.z_dim` is the total, `G.z_sizes` the split."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(32, 1, pow2=False)       # output H = W, divisible by 2**(levels-1)
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)           # output image channels
        levels: int = bounded(3, ge=1, le=MAX_LAYERS)               # pyramid levels: 3 = 8 -> 16 -> 32 at resolution 32
        z_dim: int = bounded(100, ge=1, le=MAX_WIDTH)               # the base level's noise size (the paper: 100)
        base: str = field(default="mlp", metadata={"choices": BASES})  # the coarsest level's G: mlp (the paper's CIFAR-10 base) or conv
        base_hidden: list[int] = bounded(default_factory=lambda: [1200, 1200], ge=1, le=MAX_WIDTH)  # mlp: hidden units (paper: 1200, 1200); conv: channels at r/2, r, ...
        widths: list[int] = bounded(default_factory=lambda: [128, 64], ge=1, le=MAX_WIDTH)  # hidden channels of each finer level's convnet, coarse to fine
        noise_planes: int = bounded(1, ge=1, le=MAX_CHANNELS)       # noise planes concatenated at each finer level (the paper: 1)
        batch_norm: bool = True                                     # batch norm after every hidden layer of G (base and band-pass nets)
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)         # > 0: class-conditional at every level; 0 = unconditional
        init_std: float = bounded(0.02, gt=0)                       # N(0, std) weight init

        def __post_init__(self):
            check_base(self.base, self.base_hidden, level_resolutions(self.resolution, self.levels)[0])
            check_widths(self.widths, self.levels, "widths")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes, self.num_levels = cfg.num_classes, cfg.levels
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.resolutions = level_resolutions(cfg.resolution, cfg.levels)
        self.partial = True  # a phase may run some levels only: DDP must look for unused parameters
        self.z_sizes = [cfg.z_dim] + [cfg.noise_planes * r * r for r in self.resolutions[1:]]
        self.z_dim = sum(self.z_sizes)
        r0 = self.resolutions[0]
        self.base = BaseGenerator(cfg.base, cfg.z_dim, cfg.base_hidden, cfg.channels, r0, cfg.num_classes,
                                  cfg.batch_norm)
        self.bands = nn.ModuleList(BandPassGenerator(cfg.channels, cfg.noise_planes, w, r, cfg.num_classes,
                                                     cfg.batch_norm)
                                   for w, r in zip(cfg.widths, self.resolutions[1:]))
        dcgan_init(self, cfg.init_std)
        for band in self.bands:  # h_k starts at 0: an untrained level passes the coarser image on, adding no noise
            nn.init.zeros_(band.net[-1].weight)

    def split(self, z: torch.Tensor) -> list[torch.Tensor]:
        """z [N, z_dim] -> [z_0 [N, z_dim_0], noise_1 [N, P, r_1, r_1], ...], coarsest first."""
        parts = torch.split(z, self.z_sizes, dim=1)
        return [parts[0]] + [p.reshape(len(z), -1, r, r) for p, r in zip(parts[1:], self.resolutions[1:])]

    def level(self, k: int, noise: torch.Tensor, coarse, c=None) -> torch.Tensor:
        """Level k's output: the coarsest image [N, C, r_0, r_0] in [-1, 1] (k = 0, coarse None), else the
        band-pass image [N, C, r_k, r_k] given coarse = l_k, the upsampled level-(k-1) image."""
        if k == 0:
            return self.base(noise, c)
        return self.bands[k - 1](coarse, noise, c)

    def forward(self, z, c=None, coarse: Levels | None = None):
        """coarse None: sample the whole pyramid, img [N, C, H, W] in [-1, 1]. coarse {k: l_k (None for
        k = 0)}: the training outputs of those levels only, {k: image or band-pass image}."""
        c = _classes(c, self.num_classes, "generator")
        if coarse is None:
            return self.levels(z, c)[-1]
        noise = self.split(z)
        return {k: self.level(k, noise[k], coarse[k], c) for k in sorted(coarse)}

    def levels(self, z, c=None) -> list[torch.Tensor]:
        """Every level's image while sampling, coarsest first: [I_0 [N, C, r_0, r_0], ..., I_L-1 [N, C, H, W]],
        each clamped to [-1, 1] (the range of the real images the next level was trained on)."""
        c = _classes(c, self.num_classes, "generator")
        noise = self.split(z)
        imgs = [self.level(0, noise[0], None, c)]
        for k in range(1, self.num_levels):
            low = upsample(imgs[-1])
            imgs.append((low + self.level(k, noise[k], low, c)).clamp(-1, 1))
        return imgs


class BandPassDiscriminator(nn.Module):
    """Finer level k: (h_k, l_k [N, C, r, r], c) -> logits [N]: two stride-2 4x4 convs with LeakyReLU(0.2)
    on the channels [h_k, l_k (, class plane)], then a linear layer."""

    def __init__(self, channels: int, width: int, resolution: int, num_classes: int):
        super().__init__()
        self.plane = ClassPlane(num_classes, resolution) if num_classes else None
        c_in = 2 * channels + (1 if num_classes else 0)
        side = max(resolution // 4, 1)
        self.net = nn.Sequential(
            nn.Conv2d(c_in, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(2 * width * side * side, 1))

    def forward(self, band, coarse, c=None):
        x = [band, coarse] + ([self.plane(c, band)] if self.plane is not None else [])
        return self.net(torch.cat(x, dim=1)).flatten()


@DISCRIMINATORS.register("lapgan")
class LAPGANDiscriminator(nn.Module):
    """One discriminator per level: D({k: (x_k, l_k)}, c) -> {k: logits [N]}. Level 0 judges coarsest images
    x_0 (l_0 None); level k judges a band-pass image x_k together with its conditioning image l_k."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(32, 1, pow2=False)       # input H = W, divisible by 2**(levels-1)
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)           # image channels
        levels: int = bounded(3, ge=1, le=MAX_LAYERS)               # pyramid levels (as G's)
        base: str = field(default="mlp", metadata={"choices": BASES})  # the coarsest level's D: mlp (the paper's CIFAR-10 base) or conv
        base_hidden: list[int] = bounded(default_factory=lambda: [600, 600], ge=1, le=MAX_WIDTH)  # mlp: hidden units (paper: 600, 600); conv: channels at r, r/2, ...
        dropout: float = bounded(0.5, ge=0, lt=1)                   # base D dropout (mlp: each hidden layer, as the paper; conv: before the linear)
        widths: list[int] = bounded(default_factory=lambda: [64, 64], ge=1, le=MAX_WIDTH)  # each finer level's D: first conv's channels (the second: twice), coarse to fine
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)         # > 0: class-conditional at every level; 0 = unconditional
        init_std: float = bounded(0.02, gt=0)                       # N(0, std) weight init

        def __post_init__(self):
            res = level_resolutions(self.resolution, self.levels)
            check_base(self.base, self.base_hidden, res[0])
            check_widths(self.widths, self.levels, "widths")
            if len(res) > 1 and res[1] < 4:
                raise ValueError(f"the finer levels' discriminators need at least 4x4 images, but level 1 is "
                                 f"{res[1]}x{res[1]}; raise resolution or lower levels")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes, self.num_levels = cfg.num_classes, cfg.levels
        self.resolutions = level_resolutions(cfg.resolution, cfg.levels)
        self.partial = True  # a phase may judge some levels only: DDP must look for unused parameters
        r0 = self.resolutions[0]
        self.base = BaseDiscriminator(cfg.base, cfg.base_hidden, cfg.channels, r0, cfg.num_classes, cfg.dropout)
        self.bands = nn.ModuleList(BandPassDiscriminator(cfg.channels, w, r, cfg.num_classes)
                                   for w, r in zip(cfg.widths, self.resolutions[1:]))
        dcgan_init(self, cfg.init_std)

    def level(self, k: int, x: torch.Tensor, coarse, c=None) -> torch.Tensor:
        if k == 0:
            return self.base(x, c)
        return self.bands[k - 1](x, coarse, c)

    def forward(self, inputs: Levels, c=None) -> Levels:
        c = _classes(c, self.num_classes, "discriminator")
        return {k: self.level(k, x, coarse, c) for k, (x, coarse) in sorted(inputs.items())}
