"""StyleGAN (Karras et al. 2019, "A Style-Based Generator Architecture for Generative Adversarial
Networks", arXiv:1812.04948): the style-based generator of section 2 / figure 1b and the ProGAN
discriminator with blurred downsampling.

Generator: z -> 8-layer mapping network (lr_mul 0.01, hifigan/nn/mapping.py) -> w, broadcast to
num_ws = 2 * log2(resolution) - 2 layers (one w per "conv layer"; 18 at 1024^2). Synthesis starts
from a learned 4x4 constant; the 4x4 block is const -> epilogue, conv3x3 -> epilogue; every other
block is nearest 2x upsample -> [1, 2, 1] blur -> conv3x3 -> epilogue -> conv3x3 -> epilogue.
An epilogue is: per-pixel noise times a learned per-channel strength (section 3.2), bias, leaky
ReLU(0.2) * sqrt(2), then AdaIN with the style y = A(w) = (y_s, y_b), whose scale half starts at 1
and shift half at 0 so a fresh network starts near plain instance norm. A linear, unmodulated 1x1
toRGB per resolution. Channels at r: min(channel_base // r, channel_max); channel_base 16384 is
the paper's 512 channels up to 32^2 halving to 16 at 1024^2, which gives the reported 26.2M
parameters at 1024^2.

Upsampling is nearest + blur at every resolution. The paper's release switches to a transposed
convolution at >= 128^2 for memory; that changes neither the parameter count nor (away from the
border) the function, since blur and conv are both linear shift-invariant, so we keep one path.

Discriminator: ProGAN's (hifigan/models/progan.py) with the [1, 2, 1] blur before every 2x2
average pool (section 2: "bilinear" up/down-sampling, Zhang 2019 arXiv:1904.11486).

`progressive: true` grows both networks with ProGAN's fade-in and `stage` buffer (progan.py);
layers above the stage consume no w. With `progressive: false` only the full-resolution toRGB
and fromRGB exist, so every parameter gets a gradient (plain DDP, no unused-parameter search).
Conditional variants: the mapping network embeds the class (nn/mapping.py); D uses projection.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hifigan.models.progan import (Progressive, ProGANDiscriminator, channels_at, check_channels, fade,
                                   log2_resolution, resolutions, upsample_nearest)
from hifigan.nn.activation import bias_act
from hifigan.nn.equalized import EqualConv2d, EqualLinear
from hifigan.nn.fir import setup_filter, upfirdn2d
from hifigan.nn.mapping import MappingNetwork, mix_latent
from hifigan.nn.noise import ConstantInput, NoiseInjection
from hifigan.nn.norms import adain
from hifigan.nn.rgb import ToRGB
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_LAYERS, MAX_RESOLUTION, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import DISCRIMINATORS, GENERATORS

BLUR_TAPS = (1, 2, 1)  # the paper's separable binomial low-pass


def num_ws_for(resolution: int) -> int:
    return 2 * log2_resolution(resolution) - 2


class StyleEpilogue(nn.Module):
    """x [N, C, H, W], w [N, w_dim] -> AdaIN(lrelu(x + noise + bias), A(w)): what follows each conv."""

    def __init__(self, channels: int, w_dim: int, resolution: int):
        super().__init__()
        self.noise = NoiseInjection(resolution, channels)  # per-channel strengths, zero at start
        self.bias = nn.Parameter(torch.zeros(channels))
        self.style = EqualLinear(w_dim, 2 * channels)     # -> (scale [C], shift [C])
        with torch.no_grad():
            self.style.bias[:channels].fill_(1.0)  # lr_mul is 1, so the stored bias is the bias

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        x = self.noise(x, noise_mode)
        x = bias_act(x, self.bias, act="lrelu")
        return adain(x, self.style(w))


class SynthesisBlock(nn.Module):
    """One resolution: features at r/2 (or the constant, at 4x4) -> features at r; uses two ws."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int):
        super().__init__()
        self.first = resolution == 4
        if self.first:
            self.const = ConstantInput(out_channels)
        else:
            self.register_buffer("blur", setup_filter(BLUR_TAPS), persistent=False)
            self.conv0 = EqualConv2d(in_channels, out_channels, 3, bias=False)  # bias in the epilogue
        self.epi0 = StyleEpilogue(out_channels, w_dim, resolution)
        self.conv1 = EqualConv2d(out_channels, out_channels, 3, bias=False)
        self.epi1 = StyleEpilogue(out_channels, w_dim, resolution)

    def forward(self, x: torch.Tensor | None, ws: torch.Tensor, noise_mode: str) -> torch.Tensor:
        """x [N, C_in, r/2, r/2] (ignored at 4x4), ws [N, 2, w_dim] -> [N, C_out, r, r]."""
        if self.first:
            x = self.const(ws.shape[0], ws.dtype)
        else:
            x = upfirdn2d(upsample_nearest(x), self.blur, pad=(1, 1, 1, 1))
            x = self.conv0(x)
        x = self.epi0(x, ws[:, 0], noise_mode)
        return self.epi1(self.conv1(x), ws[:, 1], noise_mode)


class SynthesisNetwork(Progressive, nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, channels, r, r] at the stage resolution r.
    Holds the `stage` buffer of a progressive StyleGAN (the generator delegates to it)."""

    def __init__(self, w_dim: int, resolution: int, channels: int, channel_base: int, channel_max: int,
                 progressive: bool = False):
        super().__init__()
        self.w_dim, self.num_ws, self.progressive = w_dim, num_ws_for(resolution), progressive
        ch = {r: channels_at(r, channel_base, channel_max) for r in resolutions(resolution)}
        self.blocks = nn.ModuleDict({str(r): SynthesisBlock(ch.get(r // 2, 0), ch[r], w_dim, r) for r in ch})
        rgb_res = list(ch) if progressive else [resolution]
        self.to_rgb = nn.ModuleDict({str(r): ToRGB(ch[r], channels) for r in rgb_res})
        self._init_stage(resolution)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        res, alpha = self.stage_info()
        x = prev = None
        for k, r in enumerate(resolutions(res)):
            prev = x
            x = self.blocks[str(r)](x, ws[:, 2 * k:2 * k + 2], noise_mode)
        img = self.to_rgb[str(res)](x)  # [N, C, res, res]
        if res > 4 and alpha < 1:
            img = fade(img, upsample_nearest(self.to_rgb[str(res // 2)](prev)), alpha)
        return img


@GENERATORS.register("stylegan1")
class StyleGAN1Generator(nn.Module):
    """z [N, z_dim] (+ c [N]) -> img [N, channels, r, r]; see the module docstring."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = bounded(512, ge=1, le=MAX_WIDTH)          # input latent size
        w_dim: int = bounded(512, ge=1, le=MAX_WIDTH)          # intermediate latent (style) size
        resolution: int = resolution_field(1024, 4)            # full output H = W, a power of two >= 4
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)      # output image channels
        channel_base: int = bounded(16384, ge=1, le=MAX_WIDTH * MAX_RESOLUTION)  # channels at res r: min(channel_base // r, channel_max)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH)    # cap on any layer's channels
        mapping_layers: int = bounded(8, ge=1, le=MAX_LAYERS)  # depth of the mapping MLP (section 2)
        mapping_lr_mul: float = bounded(0.01, gt=0)            # mapping network learning-rate multiplier (appendix C)
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # > 0: conditional (class embedding concatenated to z in the mapping)
        w_avg_beta: float = bounded(0.995, ge=0, le=1)         # decay of the tracked average w used by truncation
        progressive: bool = False                              # grow from 4x4 with ProGAN's fade-in (the paper's training schedule)

        def __post_init__(self):
            check_channels(self.resolution, self.channel_base, self.channel_max)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_classes = cfg.z_dim, cfg.w_dim, cfg.num_classes
        self.num_ws = num_ws_for(cfg.resolution)
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.progressive = cfg.progressive
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers, cfg.mapping_lr_mul,
                                      cfg.num_classes, cfg.w_avg_beta)
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.resolution, cfg.channels, cfg.channel_base,
                                          cfg.channel_max, cfg.progressive)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    @property
    def stage(self) -> torch.Tensor:
        """The synthesis network's [resolution, alpha] buffer (state_dict key "synthesis.stage")."""
        return self.synthesis.stage

    def set_stage(self, resolution: int, alpha: float) -> None:
        self.synthesis.set_stage(resolution, alpha)

    def stage_info(self) -> tuple[int, float]:
        return self.synthesis.stage_info()

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random", mix_z: torch.Tensor | None = None,
                crossover: torch.Tensor | None = None, update_w_avg: bool | None = None, return_ws: bool = False,
                ws_offset: torch.Tensor | None = None):
        """Style mixing: layers < crossover[i] take sample i's w from z, the rest from mix_z
        (crossover = num_ws: no mixing; an int: the same layer for every sample). Returns img, or (img, ws) with return_ws.
        update_w_avg: None = in training mode (see nn/mapping.py); the mixing latent never updates it."""
        ws = self.mapping(z, c, psi, cutoff, update_w_avg)
        if mix_z is not None:
            if crossover is None:
                raise ValueError("style mixing needs crossover (an int, or [N] layer index per sample) with mix_z")
            ws = mix_latent(self.mapping, ws, mix_z, c, psi, cutoff, crossover)
        if ws_offset is not None:  # path length's d(img)/d(ws) is taken at this input [N, num_ws, w_dim] of zeros:
            ws = ws + ws_offset     # an input survives engines that wrap module outputs (ZeRO-3), ws itself does not
        img = self.synthesis(ws, noise_mode)
        return (img, ws) if return_ws else img


@DISCRIMINATORS.register("stylegan1")
class StyleGAN1Discriminator(ProGANDiscriminator):
    """ProGAN's D with a [1, 2, 1] blur before every 2x downsample; img [N, C, r, r] -> logits [N]."""

    @dataclass(kw_only=True)
    class Config(ProGANDiscriminator.Config):
        progressive: bool = False   # grow with ProGAN's fade-in; false: one fromRGB, fixed resolution

    def __init__(self, cfg: Config):
        super().__init__(cfg, blur_taps=BLUR_TAPS, all_from_rgb=cfg.progressive)
