"""ProGAN (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and
Variation", arXiv:1710.10196): the networks of appendix A, table 2, and the progressive-growing
interface that the trainer drives (train/progressive.py).

Generator: z (normalized to unit RMS, section 4.2) -> "conv 4x4" on the 1x1 latent -> 4x4 x C,
a 3x3 conv; then per resolution nearest 2x upsampling and two 3x3 convs. Every conv is followed
by leaky ReLU(0.2) and pixel norm (section 4.2). A linear 1x1 toRGB per resolution, no tanh.
Discriminator: a 1x1 fromRGB + lrelu per resolution; per resolution two 3x3 convs and a 2x2
average pool; at 4x4 minibatch stddev (section 3), a 3x3 conv, a 4x4 valid conv and a linear
fully connected output. Channels at resolution r: min(channel_base // r, channel_max). Every
layer uses the equalized learning rate of section 4.1 (hifigan/nn/equalized.py); no batch norm.

Progressive growing (section 2, figure 2): every layer exists from construction; a float64 buffer
`stage` = [resolution, alpha] says which run. G at (r, alpha) = alpha * toRGB_r(block_r(h)) +
(1 - alpha) * upsample(toRGB_{r/2}(h)), h the r/2 features; D's features at r/2 = alpha *
block_r(fromRGB_r(img)) + (1 - alpha) * fromRGB_{r/2}(avgpool(img)). Layers above the stage are
not run. The buffer (not a Python attribute) holds the stage so that checkpoints and the EMA copy,
which copies buffers, carry it; reading it costs one host sync per forward, small next to a GAN step.

Conditional variants (the paper trains unconditionally; these are our additions): G concatenates
the one-hot class to z before normalizing, as the paper's CIFAR-10 setup feeds labels to G; D
uses projection (Miyato & Koyama 2018, "cGANs with Projection Discriminator", arXiv:1802.05637):
logit += <embed(c), phi(x)>, phi the features entering the output layer, because the trainer's
interface has one logit per image and no room for an auxiliary classifier's output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.activation import bias_act
from hifigan.nn.equalized import EqualConv2d, EqualLinear
from hifigan.nn.fir import setup_filter, upfirdn2d
from hifigan.nn.mbstd import minibatch_std
from hifigan.nn.norms import pixel_norm
from hifigan.nn.rgb import ToRGB, from_rgb
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_RESOLUTION, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import DISCRIMINATORS, GENERATORS


# ----------------------------------------------------------------------------------------------
# Helpers shared with stylegan.py

def log2_resolution(resolution: int, what: str = "resolution") -> int:
    """log2 of a power-of-two resolution >= 4 (raises with the offending value otherwise)."""
    n = int(math.log2(resolution)) if resolution > 0 else 0
    if 2 ** n != resolution or resolution < 4:
        raise ValueError(f"{what} must be a power of two >= 4, got {resolution}")
    return n


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


def check_channels(resolution: int, channel_base: int, channel_max: int) -> None:
    """Config check: the widest resolution must keep at least one channel."""
    log2_resolution(resolution)
    if channels_at(resolution, channel_base, channel_max) < 1:
        raise ValueError(f"channel_base {channel_base} gives no channels at {resolution}x{resolution}; "
                         f"use channel_base >= {resolution}")


def resolutions(resolution: int) -> list[int]:
    """[4, 8, ..., resolution]."""
    return [2 ** k for k in range(2, log2_resolution(resolution) + 1)]


def upsample_nearest(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")  # [N, C, 2H, 2W]


def fade(new: torch.Tensor, old: torch.Tensor, alpha: float) -> torch.Tensor:
    """alpha * new + (1 - alpha) * old, written out (not lerp) so alpha = 0 returns `old` bit for bit."""
    return alpha * new + (1 - alpha) * old


class Progressive:
    """Mixin for a network that grows: the `stage` buffer, set_stage and stage_info.

    A class sets `progressive` (True here; an instance may override it from its config). When it is
    False the network is fixed-size and only its full stage may be set (a no-op)."""

    progressive = True

    def _init_stage(self, resolution: int) -> None:
        self.max_resolution = resolution
        self.register_buffer("stage", torch.tensor([float(resolution), 1.0], dtype=torch.float64))

    def set_stage(self, resolution: int, alpha: float) -> None:
        """Run at `resolution` (a power of two in [4, full]) with the newest layers weighted by alpha.
        At 4x4 there is nothing to fade from, so alpha has no effect there."""
        if resolution not in resolutions(self.max_resolution):
            raise ValueError(f"stage resolution must be a power of two in [4, {self.max_resolution}], got {resolution}")
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"stage alpha must be in [0, 1], got {alpha}")
        if not self.progressive and (resolution != self.max_resolution or float(alpha) != 1.0):
            raise ValueError(f"{type(self).__name__} was built with progressive=False and runs only at "
                             f"{self.max_resolution}x{self.max_resolution}; set progressive: true in its "
                             f"config to grow it")
        with torch.no_grad():
            self.stage.copy_(torch.tensor([float(resolution), float(alpha)], dtype=torch.float64))

    def stage_info(self) -> tuple[int, float]:
        r, a = self.stage.tolist()
        return int(r), float(a)


# ----------------------------------------------------------------------------------------------
# Generator

class LatentToFeatures(nn.Module):
    """z [N, Z] -> [N, C, 4, 4]: table 2's "conv 4x4" applied to the latent as a 1x1 image, i.e. a
    dense layer whose equalized-LR fan-in is that of the 4x4 conv (Z * 16), with one bias per channel."""

    def __init__(self, in_features: int, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels, in_features, 4, 4))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.scale = 1 / math.sqrt(in_features * 16)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.einsum("nz,czhw->nchw", z, self.weight.to(z.dtype) * self.scale)
        return bias_act(x, self.bias, act="lrelu")


class PixelNormed(nn.Module):
    """A layer followed by pixel norm (section 4.2), so a forward hook sees the normalized output."""

    def __init__(self, layer: nn.Module, enabled: bool = True):
        super().__init__()
        self.layer, self.enabled = layer, enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer(x)
        return pixel_norm(x) if self.enabled else x


class GBlock(nn.Module):
    """Features at r/2 -> features at r: nearest 2x upsample, two (3x3 conv, lrelu, pixel norm)."""

    def __init__(self, in_channels: int, out_channels: int, pixel_norm: bool):
        super().__init__()
        self.conv0 = PixelNormed(EqualConv2d(in_channels, out_channels, 3, activation="lrelu"), pixel_norm)
        self.conv1 = PixelNormed(EqualConv2d(out_channels, out_channels, 3, activation="lrelu"), pixel_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.conv0(upsample_nearest(x)))


class GInput(nn.Module):
    """The 4x4 block: latent -> 4x4 (lrelu, pixel norm) -> 3x3 conv (lrelu, pixel norm)."""

    def __init__(self, in_features: int, channels: int, pixel_norm: bool):
        super().__init__()
        self.dense = PixelNormed(LatentToFeatures(in_features, channels), pixel_norm)
        self.conv = PixelNormed(EqualConv2d(channels, channels, 3, activation="lrelu"), pixel_norm)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dense(z))


@GENERATORS.register("progan")
class ProGANGenerator(Progressive, nn.Module):
    """z [N, z_dim] (+ c [N]) -> img [N, channels, r, r] at the stage resolution r, linear output."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = bounded(512, ge=1, le=MAX_WIDTH)        # input latent size
        resolution: int = resolution_field(1024, 4)          # full output H = W, a power of two >= 4
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)    # output image channels
        channel_base: int = bounded(16384, ge=1, le=MAX_WIDTH * MAX_RESOLUTION)  # channels at res r: min(channel_base // r, channel_max)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH)  # cap on any layer's channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)  # > 0: conditional (one-hot concatenated to z before normalizing)
        pixel_norm: bool = True                              # pixel norm after every conv (section 4.2); off only for ablations

        def __post_init__(self):
            check_channels(self.resolution, self.channel_base, self.channel_max)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        ch = {r: channels_at(r, cfg.channel_base, cfg.channel_max) for r in resolutions(cfg.resolution)}
        self.blocks = nn.ModuleDict({"4": GInput(cfg.z_dim + cfg.num_classes, ch[4], cfg.pixel_norm)})
        for r in resolutions(cfg.resolution)[1:]:
            self.blocks[str(r)] = GBlock(ch[r // 2], ch[r], cfg.pixel_norm)
        self.to_rgb = nn.ModuleDict({str(r): ToRGB(c, cfg.channels) for r, c in ch.items()})
        self._init_stage(cfg.resolution)

    def latent(self, z: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.num_classes:
            if c is None:
                raise ValueError("this generator is conditional: pass class labels c")
            z = torch.cat([z, F.one_hot(c.long(), self.num_classes).to(z.dtype)], dim=1)
        return pixel_norm(z)  # the latent lives on the unit-RMS sphere (section 4.2) in every variant

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        res, alpha = self.stage_info()
        x, prev = self.latent(z, c), None
        for r in resolutions(res):
            prev = x
            x = self.blocks[str(r)](x)
        img = self.to_rgb[str(res)](x)  # [N, C, res, res]
        if res > 4 and alpha < 1:
            img = fade(img, upsample_nearest(self.to_rgb[str(res // 2)](prev)), alpha)
        return img


# ----------------------------------------------------------------------------------------------
# Discriminator

class DBlock(nn.Module):
    """Features at r -> features at r/2: two (3x3 conv, lrelu), optional low-pass blur, 2x2 avg pool."""

    def __init__(self, in_channels: int, out_channels: int, blur: torch.Tensor | None = None):
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu")
        self.conv1 = EqualConv2d(in_channels, out_channels, 3, activation="lrelu")
        if blur is not None:
            self.register_buffer("blur", blur, persistent=False)  # derived from config, not state
        else:
            self.blur = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(x))
        if self.blur is not None:
            p = self.blur.shape[-1] // 2  # odd taps: pad to keep the size
            x = upfirdn2d(x, self.blur, pad=(p, p, p, p))
        return F.avg_pool2d(x, 2)


class DEpilogue(nn.Module):
    """4x4 features -> logits: minibatch stddev, 3x3 conv, 4x4 valid conv, linear output (+ projection).

    The 4x4 valid conv on a 4x4 map is a dense layer over the flattened map (same weights, fan-in
    and output); it is written as one because EqualConv2d pads to keep the size."""

    def __init__(self, channels: int, mbstd_group: int, mbstd_channels: int, num_classes: int):
        super().__init__()
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels
        self.conv = EqualConv2d(channels + mbstd_channels, channels, 3, activation="lrelu")
        self.dense = EqualLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualLinear(channels, 1)
        self.embed = EqualLinear(num_classes, channels, bias=False) if num_classes else None
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        if self.mbstd_channels:
            x = minibatch_std(x, self.mbstd_group, self.mbstd_channels)
        phi = self.dense(self.conv(x).flatten(1))  # [N, C]
        logits = self.out(phi).squeeze(1)         # [N]
        if self.embed is not None:
            if c is None:
                raise ValueError("this discriminator is conditional: pass class labels c")
            y = self.embed(F.one_hot(c.long(), self.num_classes).to(phi.dtype))
            logits = logits + (y * phi).sum(dim=1)
        return logits


@DISCRIMINATORS.register("progan")
class ProGANDiscriminator(Progressive, nn.Module):
    """img [N, channels, r, r] at the stage resolution r (+ c [N]) -> logits [N].

    Subclasses (StyleGAN's D) reuse it with a blur before every downsample and, when they do not
    grow, with a fromRGB at the full resolution only (no parameters that never get a gradient)."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(1024, 4)           # full input H = W, a power of two >= 4
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)     # input image channels
        channel_base: int = bounded(16384, ge=1, le=MAX_WIDTH * MAX_RESOLUTION)  # channels at res r: min(channel_base // r, channel_max)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH)   # cap on any layer's channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)   # > 0: conditional (projection discriminator, arXiv:1802.05637)
        mbstd_group: int = bounded(4, ge=1, le=MAX_WIDTH)     # minibatch-stddev group size (section 3); reduced to divide the batch
        mbstd_channels: int = bounded(1, ge=0, le=MAX_WIDTH)  # minibatch-stddev feature maps appended at 4x4; 0 disables it

        def __post_init__(self):
            check_channels(self.resolution, self.channel_base, self.channel_max)
            ch4 = channels_at(4, self.channel_base, self.channel_max)
            if self.mbstd_channels and ch4 % self.mbstd_channels:
                raise ValueError(f"mbstd_channels {self.mbstd_channels} must divide the 4x4 channels {ch4}")

    def __init__(self, cfg: Config, blur_taps: tuple | None = None, all_from_rgb: bool = True):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        self.progressive = all_from_rgb  # without the lower fromRGBs there is nothing to grow with
        ch = {r: channels_at(r, cfg.channel_base, cfg.channel_max) for r in resolutions(cfg.resolution)}
        rgb_res = list(ch) if all_from_rgb else [cfg.resolution]
        self.from_rgb = nn.ModuleDict({str(r): from_rgb(cfg.channels, ch[r]) for r in rgb_res})
        blur = setup_filter(blur_taps) if blur_taps is not None else None
        self.blocks = nn.ModuleDict({str(r): DBlock(ch[r], ch[r // 2], blur)
                                     for r in reversed(resolutions(cfg.resolution)[1:])})
        self.epilogue = DEpilogue(ch[4], cfg.mbstd_group, cfg.mbstd_channels, cfg.num_classes)
        self._init_stage(cfg.resolution)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        res, alpha = self.stage_info()
        if tuple(img.shape[-2:]) != (res, res):
            raise ValueError(f"D is at the {res}x{res} stage but got images of {tuple(img.shape[-2:])}; "
                             f"downsample the reals to the stage resolution")
        x = self.from_rgb[str(res)](img)
        if res > 4:
            x = self.blocks[str(res)](x)  # [N, C_{res/2}, res/2, res/2]
            if alpha < 1:
                x = fade(x, self.from_rgb[str(res // 2)](F.avg_pool2d(img, 2)), alpha)
            for r in reversed(resolutions(res // 2)[1:]):
                x = self.blocks[str(r)](x)
        return self.epilogue(x, c)
