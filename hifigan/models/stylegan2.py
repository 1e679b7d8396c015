"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958), config F: skip generator and residual discriminator (section 4.1, figure 7).

Generator: z -> mapping network -> ws [N, num_ws, w_dim] -> synthesis. The synthesis network
starts from a learned 4x4 constant; every resolution block runs a 3x3 modulated convolution with
2x FIR upsampling (conv0, absent at 4x4) and a 3x3 modulated convolution (conv1), each followed by
a single-scalar-strength noise input, bias and leaky ReLU(0.2) * sqrt(2); a modulated 1x1 toRGB
without demodulation adds the block's RGB image to the FIR-upsampled image of the blocks before.
w indexing: a block consumes one w per convolution and its toRGB reads the w *after* them, which
is the w of the next block's conv0, so num_ws = 2 * log2(resolution) - 2 (18 at 1024^2).

Discriminator: fromRGB at the input resolution only, then per resolution a residual block
(3x3 conv, 3x3 conv with 2x FIR downsampling; 1x1 downsampling skip; sum * sqrt(1/2)), then at
4x4 minibatch stddev, a 3x3 conv, a fully connected layer and the output layer. Conditional D
uses projection (Miyato & Koyama 2018, arXiv:1802.05637) as StyleGAN2-ADA does: the output layer
gives a C-dim vector that is dotted with the label's mapped embedding cmap, / sqrt(C); cmap comes
from a mapping network of its own (z_dim 0: one-hot -> linear embed -> normalize -> `mapping_layers`
fully connected layers with lr_mul 0.01; 8 layers in StyleGAN2-ADA, parameter names `mapping.*`).

Mixed precision and clamping follow StyleGAN2-ADA (Karras et al. 2020, arXiv:2006.06676): the
highest `num_fp16_res` resolutions run in float16 on CUDA (never 4x4, never on CPU); `conv_clamp`
clamps every convolution's output, float16 or not, so fp16 cannot overflow.
Every weight is N(0, 1) with equalized learning rate; the trainer seeds the RNG before building.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from hifigan.nn.activation import ACTIVATIONS, bias_act
from hifigan.nn.equalized import EqualConv2d, EqualLinear
from hifigan.nn.fir import conv2d_resample, setup_filter, upsample2d
from hifigan.nn.mapping import MappingNetwork, mix_latent
from hifigan.nn.mbstd import MinibatchStd
from hifigan.nn.modconv import ModulatedConv2d
from hifigan.nn.noise import NOISE_MODES, ConstantInput, NoiseInjection
from hifigan.nn.rgb import ToRGB, from_rgb
from hifigan.models.progan import channels_at, log2_resolution
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_LAYERS, MAX_RESOLUTION, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import DISCRIMINATORS, GENERATORS

FIR_TAPS = (1, 3, 3, 1)  # binomial low-pass of section 4 / appendix B


def _log2_resolution(resolution: int) -> int:
    """As progan's, but from 8x8: the 4x4 block alone has no upsampling layer to style."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return log2_resolution(resolution)


def _lowest_fp16_res(log2_res: int, num_fp16_res: int) -> int:
    """The lowest resolution that runs in float16 (4x4 never does: it is cheap and most sensitive)."""
    return max(2 ** (log2_res + 1 - num_fp16_res), 8)


def _block_dtype(use_fp16: bool, x: torch.Tensor) -> torch.dtype:
    # CPU float16 convolutions are slow or missing; CPU runs keep the same graph in float32
    return torch.float16 if use_fp16 and x.is_cuda else torch.float32


# ----------------------------------------------------------------------------------------------
# Generator

class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up) -> + scaled noise -> + bias -> lrelu * sqrt(2) (-> clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1,
                 clamp: float | None = None, resample_filter: torch.Tensor | None = None, use_noise: bool = True):
        super().__init__()
        self.resolution = resolution  # of the output, where the noise lives
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, up=up, activation="lrelu", clamp=clamp,
                                    resample_filter=resample_filter)
        # one scalar strength (StyleGAN2, section 2.1); use_noise=False drops it (StyleGAN2-ADA's use_noise)
        self.noise = NoiseInjection(resolution) if use_noise else None

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str, fused: bool | None) -> torch.Tensor:
        # the noise goes after the conv, so it needs the output's shape: a zero-stride stand-in carries it
        if self.noise is None:
            return self.conv(x, w, fused=fused)
        shape = x.new_empty(()).expand(x.shape[0], 1, self.resolution, self.resolution)
        return self.conv(x, w, noise=self.noise.noise(shape, noise_mode), fused=fused)


class SynthesisBlock(nn.Module):
    """One resolution: (conv0 up) -> conv1 -> toRGB; img = upsample2d(img_prev) + toRGB(x)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 use_fp16: bool, clamp: float | None, resample_filter: torch.Tensor, use_noise: bool = True):
        super().__init__()
        self.resolution, self.use_fp16 = resolution, use_fp16
        self.register_buffer("resample_filter", resample_filter, persistent=False)
        if resolution == 4:
            self.const = ConstantInput(out_channels)
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, clamp=clamp,
                                        resample_filter=resample_filter, use_noise=use_noise)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, clamp=clamp, use_noise=use_noise)
        self.torgb = ToRGB(out_channels, img_channels, w_dim, clamp=clamp)
        self.num_conv = 1 if self.conv0 is None else 2

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor, noise_mode: str,
                fused: bool | None) -> tuple[torch.Tensor, torch.Tensor]:
        """ws [N, num_conv + 1, w_dim]; x, img: the previous block's outputs (None at 4x4)."""
        dtype = _block_dtype(self.use_fp16, ws)
        if self.conv0 is None:
            x = self.const(ws.shape[0], dtype)
        else:
            x = self.conv0(x.to(dtype), ws[:, 0], noise_mode, fused)
        x = self.conv1(x, ws[:, self.num_conv - 1], noise_mode, fused)
        y = self.torgb(x, ws[:, self.num_conv], fused=fused).float()  # the image sums in float32
        img = y if img is None else upsample2d(img, self.resample_filter) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, img_channels, resolution, resolution] (float32)."""

    def __init__(self, w_dim: int, resolution: int, img_channels: int, channel_base: int, channel_max: int,
                 num_fp16_res: int = 0, conv_clamp: float | None = None, fused_modconv: bool | None = None,
                 use_noise: bool = True):
        super().__init__()
        log2_res = _log2_resolution(resolution)
        fp16_from = _lowest_fp16_res(log2_res, num_fp16_res)
        self.fused_modconv = fused_modconv
        f = setup_filter(FIR_TAPS)
        self.blocks = nn.ModuleDict()
        for res in (2 ** i for i in range(2, log2_res + 1)):
            in_ch = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            out_ch = channels_at(res, channel_base, channel_max)
            self.blocks[f"b{res}"] = SynthesisBlock(in_ch, out_ch, w_dim, res, img_channels, res >= fp16_from,
                                                    conv_clamp, f.clone(), use_noise)
        self.num_ws = sum(b.num_conv for b in self.blocks.values()) + 1  # + the last toRGB's own w

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused: bool | None = None) -> torch.Tensor:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode {noise_mode!r} is not allowed (choose from {', '.join(NOISE_MODES)})")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, w_dim], got {list(ws.shape)}")
        fused = self.fused_modconv if fused is None else fused  # still None: ModulatedConv2d picks by mode
        x = img = None
        i = 0
        for block in self.blocks.values():
            x, img = block(x, img, ws[:, i:i + block.num_conv + 1], noise_mode, fused)
            i += block.num_conv  # the toRGB's w is the next block's first
        return img


@GENERATORS.register("stylegan2")
class StyleGAN2Generator(nn.Module):
    """StyleGAN2 generator (Karras et al., 2020, arXiv:1912.04958), config F by default.
    z [N, z_dim] (+ c [N]) -> img [N, channels, resolution, resolution], roughly in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = bounded(512, ge=1, le=MAX_WIDTH)          # input latent size
        w_dim: int = bounded(512, ge=1, le=MAX_WIDTH)          # intermediate latent size
        resolution: int = resolution_field(1024, 8)            # output H = W, a power of two >= 8
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)      # output image channels
        channel_base: int = bounded(32768, ge=1, le=MAX_WIDTH * MAX_RESOLUTION)  # channels at res r: min(channel_base // r, channel_max)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH)    # cap on any layer's channels
        mapping_layers: int = bounded(8, ge=1, le=MAX_LAYERS)  # fully connected layers of the mapping network
        mapping_lr_mul: float = bounded(0.01, gt=0)            # mapping network learning-rate multiplier (StyleGAN app. C)
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)    # > 0: conditional (class embedding concatenated to z)
        w_avg_beta: float = bounded(0.995, ge=0, le=1)         # decay of the moving average of w used by truncation
        num_fp16_res: int = bounded(0, ge=0, le=16)            # the highest N resolutions run in float16 on CUDA (not 4x4)
        conv_clamp: Optional[float] = bounded(None, gt=0)      # clamp conv outputs to +-conv_clamp (recipes: 256)
        fused_modconv: Optional[bool] = None                   # None: fused grouped conv in eval, per-channel scaling in training
        use_noise: bool = True                                 # per-pixel noise inputs (false: none, for data without stochastic detail)

        def __post_init__(self):
            _log2_resolution(self.resolution)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_classes = cfg.z_dim, cfg.w_dim, cfg.num_classes
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.resolution, cfg.channels, cfg.channel_base,
                                          cfg.channel_max, cfg.num_fp16_res, cfg.conv_clamp, cfg.fused_modconv,
                                          cfg.use_noise)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.w_dim, self.num_ws, cfg.mapping_layers, cfg.mapping_lr_mul,
                                      cfg.num_classes, cfg.w_avg_beta)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "random", mix_z: torch.Tensor | None = None, crossover=None,
                update_w_avg: bool | None = None, return_ws: bool = False,
                ws_offset: torch.Tensor | None = None):
        """Style mixing: with mix_z, layers >= crossover take mix_z's w (crossover: an int for the whole
        batch, as StyleGAN2-ADA decides once per minibatch, or [N] int64 per sample; None draws one
        uniformly from [1, num_ws) per sample; num_ws = no mixing, and then mix_z's mapping is skipped).
        update_w_avg: None = in training mode (StyleGAN2-ADA's rule, see nn/mapping.py); the mixing
        latent never updates it. With return_ws, also returns the ws actually used [N, num_ws, w_dim],
        still in the graph (path-length regularization)."""
        ws = self.mapping(z, c, psi, cutoff, update_w_avg)
        if mix_z is not None:
            if crossover is None:
                crossover = torch.randint(1, self.num_ws, (z.shape[0],), device=z.device)
            ws = mix_latent(self.mapping, ws, mix_z, c, psi, cutoff, crossover)
        if ws_offset is not None:  # path length's d(img)/d(ws) is taken at this input [N, num_ws, w_dim] of zeros:
            ws = ws + ws_offset     # an input survives engines that wrap module outputs (ZeRO-3), ws itself does not
        img = self.synthesis(ws, noise_mode=noise_mode)
        return (img, ws) if return_ws else img


# ----------------------------------------------------------------------------------------------
# Discriminator

class DownConv(nn.Module):
    """Equalized-LR k x k conv with 2x FIR downsampling (filter, then stride-2 conv), optional bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, resample_filter: torch.Tensor,
                 bias: bool = True, activation: str = "lrelu", clamp: float | None = None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.activation, self.clamp = activation, clamp
        self.register_buffer("resample_filter", resample_filter, persistent=False)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        x = conv2d_resample(x, self.weight.to(x.dtype) * self.scale, self.resample_filter, down=2)
        clamp = None if self.clamp is None else self.clamp * gain  # clamping after the gain, as the sum sees it
        return bias_act(x, self.bias, act=self.activation, gain=ACTIVATIONS[self.activation][1] * gain,
                        clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """Residual block at resolution r: [N, C_in, r, r] -> [N, C_out, r/2, r/2]; fromRGB at the top only."""

    def __init__(self, in_channels: int, out_channels: int, img_channels: int, is_top: bool, use_fp16: bool,
                 clamp: float | None, resample_filter: torch.Tensor):
        super().__init__()
        self.use_fp16 = use_fp16
        self.fromrgb = from_rgb(img_channels, in_channels, clamp=clamp) if is_top else None
        self.conv0 = EqualConv2d(in_channels, in_channels, 3, activation="lrelu", clamp=clamp)
        self.conv1 = DownConv(in_channels, out_channels, 3, resample_filter, clamp=clamp)
        self.skip = DownConv(in_channels, out_channels, 1, resample_filter, bias=False, activation="linear")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(_block_dtype(self.use_fp16, x))
        if self.fromrgb is not None:
            x = self.fromrgb(x)
        # each branch scaled by sqrt(1/2) keeps the sum at unit variance (section 4.1)
        y = self.skip(x, gain=math.sqrt(0.5))
        return self.conv1(self.conv0(x), gain=math.sqrt(0.5)) + y


class DiscriminatorEpilogue(nn.Module):
    """4x4 features -> minibatch stddev -> 3x3 conv -> fc -> out (1 logit, or C-dim for projection)."""

    def __init__(self, channels: int, cmap_dim: int, mbstd_group: int, mbstd_channels: int,
                 clamp: float | None):
        super().__init__()
        self.mbstd = MinibatchStd(mbstd_group, mbstd_channels) if mbstd_channels > 0 else None
        self.conv = EqualConv2d(channels + mbstd_channels, channels, 3, activation="lrelu", clamp=clamp)
        self.fc = EqualLinear(channels * 16, channels, activation="lrelu")
        self.out = EqualLinear(channels, cmap_dim or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.out(self.fc(self.conv(x).flatten(1)))  # [N, cmap_dim or 1]


@DISCRIMINATORS.register("stylegan2")
class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (Karras et al., 2020, arXiv:1912.04958), config F by default.
    img [N, channels, resolution, resolution] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(1024, 8)           # input H = W, a power of two >= 8
        channels: int = bounded(3, ge=1, le=MAX_CHANNELS)     # input image channels
        channel_base: int = bounded(32768, ge=1, le=MAX_WIDTH * MAX_RESOLUTION)  # channels at res r: min(channel_base // r, channel_max)
        channel_max: int = bounded(512, ge=1, le=MAX_WIDTH)   # cap on any layer's channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)   # > 0: conditional by projection onto the label's mapped embedding
        mapping_layers: int = bounded(8, ge=1, le=MAX_LAYERS) # layers of the conditional D's label mapping (StyleGAN2-ADA: 8)
        mapping_lr_mul: float = bounded(0.01, gt=0)           # its learning-rate multiplier
        mbstd_group: int = bounded(4, ge=1, le=MAX_WIDTH)     # minibatch-stddev group size (smaller if it does not divide N)
        mbstd_channels: int = bounded(1, ge=0, le=MAX_WIDTH)  # minibatch-stddev feature maps appended; 0 disables it
        num_fp16_res: int = bounded(0, ge=0, le=16)           # the highest N resolutions run in float16 on CUDA (not 4x4)
        conv_clamp: Optional[float] = bounded(None, gt=0)     # clamp conv outputs to +-conv_clamp (recipes: 256)

        def __post_init__(self):
            _log2_resolution(self.resolution)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        log2_res = _log2_resolution(cfg.resolution)
        fp16_from = _lowest_fp16_res(log2_res, cfg.num_fp16_res)
        f = setup_filter(FIR_TAPS)
        self.blocks = nn.ModuleDict()
        for res in (2 ** i for i in range(log2_res, 2, -1)):
            ch = [channels_at(r, cfg.channel_base, cfg.channel_max) for r in (res, res // 2)]
            self.blocks[f"b{res}"] = DiscriminatorBlock(ch[0], ch[1], cfg.channels, res == cfg.resolution,
                                                        res >= fp16_from, cfg.conv_clamp, f.clone())
        c4 = channels_at(4, cfg.channel_base, cfg.channel_max)
        self.cmap_dim = c4 if cfg.num_classes else 0
        # projection onto the label's embedding, mapped as StyleGAN2-ADA maps it (no w_avg, one vector)
        self.mapping = MappingNetwork(0, c4, None, cfg.mapping_layers, cfg.mapping_lr_mul, cfg.num_classes,
                                      None) if cfg.num_classes else None
        self.epilogue = DiscriminatorEpilogue(c4, self.cmap_dim, cfg.mbstd_group, cfg.mbstd_channels,
                                              cfg.conv_clamp)

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = img
        for block in self.blocks.values():
            x = block(x)
        x = self.epilogue(x)
        if self.mapping is None:
            return x.flatten()  # [N]
        if c is None:
            raise ValueError("this discriminator is conditional: pass class labels c")
        cmap = self.mapping(None, c)  # [N, cmap_dim]
        return (x * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)
