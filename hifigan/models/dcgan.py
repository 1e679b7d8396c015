"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", arXiv:1511.06434).

G: z -> 4x4 by a transposed convolution, then stride-2 transposed convolutions with batch norm
and ReLU, halving the channels as the resolution doubles, tanh at the output. D mirrors it:
stride-2 convolutions with LeakyReLU(0.2), batch norm on every layer but the first, one logit
from the final 4x4 map. No pooling, no fully connected hidden layers, weights from N(0, 0.02).
Conditional variants (cDCGAN) concatenate the one-hot class to z in G and as constant label maps
to the image channels in D.

D options beyond the paper: norm "none" or "layer" (GroupNorm(1, C): per-sample normalization over
C, H, W) instead of batch norm, since a WGAN-GP critic's gradient penalty is per sample (Gulrajani
et al. 2017, "Improved Training of Wasserstein GANs", arXiv:1704.00028, Sec. 4); spectral_norm
(Miyato et al. 2018, arXiv:1802.05957; hifigan/nn/spectral.py); and the heads of
hifigan.models.classic.HeadedDiscriminator (AC-GAN / SGAN classifier, the features InfoGAN's Q reads)
on the flattened final 4x4 feature map. InfoGAN's Q and cGAN + classifier's C are networks of their own
here (DCGANCodePosterior, DCGANClassifier).
"""
from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.models.classic import MOVED, CodePosterior, HeadedDiscriminator, check_heads_config, check_q_config
from hifigan.nn.codes import apply_codes, check_codes
from hifigan.nn.init import dcgan_init
from hifigan.schema import MAX_CHANNELS, MAX_CLASSES, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import CLASSIFIERS, DISCRIMINATORS, GENERATORS, Q_NETWORKS

NORMS = ("batch", "none", "layer")  # D normalization choices


def _levels(resolution: int) -> int:
    n = int(math.log2(resolution)) if resolution > 0 else 0
    if 2 ** n != resolution or resolution < 8:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return n - 2  # stride-2 stages between 4x4 and the output


@GENERATORS.register("dcgan")
class DCGANGenerator(nn.Module):
    """z [N, z_dim] (+ c [N]) -> img [N, channels, resolution, resolution] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = bounded(100, ge=1, le=MAX_WIDTH)        # input latent size
        resolution: int = resolution_field(32, 8)            # output H = W, a power of two >= 8
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)    # output image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)         # channels of the last hidden layer (ngf); doubled per level towards 4x4
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)   # cap on any layer's channels
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)  # > 0: conditional (one-hot concatenated to z)
        code_cat: int = bounded(0, ge=0, le=MAX_CLASSES)     # InfoGAN: z's last code_cat + code_cont entries are codes (hifigan/nn/codes.py)
        code_cont: int = bounded(0, ge=0, le=MAX_WIDTH)
        init_std: float = bounded(0.02, gt=0)                # N(0, std) weight init

        def __post_init__(self):
            _levels(self.resolution)
            check_codes(self.z_dim, self.code_cat, self.code_cont)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.code_cat, self.code_cont = cfg.code_cat, cfg.code_cont
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        n = _levels(cfg.resolution)
        ch = [min(cfg.width * 2 ** i, cfg.max_width) for i in reversed(range(n))]  # 4x4 ... res/2
        layers = [nn.ConvTranspose2d(cfg.z_dim + cfg.num_classes, ch[0], 4, 1, 0, bias=False),
                  nn.BatchNorm2d(ch[0]), nn.ReLU(True)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(ch[-1], cfg.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, cfg.init_std)

    def forward(self, z, c=None, codes=None):
        """codes: None (read from z) or (category [N] or None, continuous [N, code_cont] or None)."""
        z = apply_codes(z, self.code_cat, self.code_cont, *(codes or ()))
        if self.num_classes:
            if c is None:
                raise ValueError("this generator is conditional: pass class labels c")
            z = torch.cat([z, F.one_hot(c.long(), self.num_classes).to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])  # [N, C, H, W]


def _d_trunk(cfg, in_channels: int) -> list[nn.Module]:
    """Stride-2 convs from the input resolution down to the final 4x4 map (D's penultimate features)."""
    ch = [min(cfg.width * 2 ** i, cfg.max_width) for i in range(_levels(cfg.resolution))]  # res/2 ... 4x4
    layers = [nn.Conv2d(in_channels, ch[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for c_in, c_out in zip(ch[:-1], ch[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=cfg.norm == "none")]  # a norm's shift replaces the bias
        layers += {"batch": [nn.BatchNorm2d(c_out)], "layer": [nn.GroupNorm(1, c_out)], "none": []}[cfg.norm]
        layers += [nn.LeakyReLU(0.2, True)]
    return layers


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(HeadedDiscriminator):
    """img [N, channels, resolution, resolution] (+ c [N]) -> logits [N] (heads: HeadedDiscriminator)."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = resolution_field(32, 8)                        # input H = W, a power of two >= 8
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)                # input image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)                     # channels of the first layer (ndf); doubled per level towards 4x4
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)               # cap on any layer's channels
        norm: str = field(default="batch", metadata={"choices": NORMS})  # on all convs but the first (layer: GroupNorm)
        batch_norm: typing.Optional[bool] = None                         # legacy alias: false = norm none (older checkpoints' configs)
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)              # > 0: conditional (one-hot label maps concatenated to the image)
        init_std: float = bounded(0.02, gt=0)                            # N(0, std) weight init
        aux_classes: int = bounded(0, ge=0, le=MAX_CLASSES)              # > 0: auxiliary classifier on the flattened 4x4 map (AC-GAN; SGAN: K + 1)
        spectral_norm: bool = False                                      # spectral normalization of every D weight (SN-GAN; usually norm none)
        MOVED = MOVED

        def __post_init__(self):
            _levels(self.resolution)
            if self.norm not in NORMS:
                raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
            if self.batch_norm is not None:  # fold the legacy flag into norm, then forget it
                if self.batch_norm and self.norm != "batch":
                    raise ValueError(f"batch_norm: true contradicts norm: {self.norm}; "
                                     f"drop batch_norm and set only norm")
                if not self.batch_norm and self.norm == "batch":
                    self.norm = "none"
                self.batch_norm = None
            check_heads_config(self)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        width = min(cfg.width * 2 ** (_levels(cfg.resolution) - 1), cfg.max_width)  # channels of the 4x4 map
        self.net = nn.Sequential(*_d_trunk(cfg, cfg.channels + cfg.num_classes),
                                 nn.Conv2d(width, 1, 4, 1, 0, bias=False))  # one logit from the 4x4 map
        self.init_heads(cfg, width * 16)
        dcgan_init(self, cfg.init_std)
        if cfg.spectral_norm:
            self.spectral_norm_()

    def d_input(self, img, c=None):
        if not self.num_classes:
            return img
        if c is None:
            raise ValueError("this discriminator is conditional: pass class labels c")
        maps = F.one_hot(c.long(), self.num_classes).to(img.dtype)[:, :, None, None]
        return torch.cat([img, maps.expand(-1, -1, *img.shape[2:])], dim=1)  # [N, C + num_classes, H, W]



def _check_trunk(cfg) -> int:
    """Channels of the trunk's final 4x4 map, after checking the trunk fields a D Config would check."""
    n = _levels(cfg.resolution)
    if cfg.norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {cfg.norm!r}")
    return min(cfg.width * 2 ** (n - 1), cfg.max_width)


@CLASSIFIERS.register("dcgan")
class DCGANClassifier(nn.Module):
    """img [N, channels, res, res] -> class logits [N, classes]: DCGAN D's trunk without the class input (a
    classifier predicts the class: it never sees it), then one linear layer. cGAN + classifier's C."""

    @dataclass(kw_only=True)
    class Config:
        classes: int = bounded(10, le=MAX_CLASSES)                   # number of classes (>= 2)
        resolution: int = resolution_field(32, 8)                        # input H = W, a power of two >= 8
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)                # input image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)                     # channels of the first layer; doubled per level towards 4x4
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)               # cap on any layer's channels
        norm: str = field(default="batch", metadata={"choices": NORMS})  # on all convs but the first
        init_std: float = bounded(0.02, gt=0)                            # N(0, std) weight init

        def __post_init__(self):
            _check_trunk(self)
            if self.classes < 2:
                raise ValueError(f"classes must be >= 2, got {self.classes}")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, self.classes = cfg, cfg.classes
        width = _check_trunk(cfg)
        self.net = nn.Sequential(*_d_trunk(cfg, cfg.channels), nn.Flatten(), nn.Linear(width * 16, cfg.classes))
        dcgan_init(self, cfg.init_std)

    def forward(self, img):
        return self.net(img)  # [N, classes]


@Q_NETWORKS.register("dcgan")
class DCGANCodePosterior(CodePosterior):
    """InfoGAN's Q for DCGAN D: linear heads on D's flattened 4x4 map (trunk: shared, the paper) or on a
    DCGAN D trunk of its own (trunk: own). Trunk fields must match D's when shared (checked at build)."""

    @dataclass(kw_only=True)
    class Config:
        q_cat: int = bounded(10, le=MAX_CLASSES)                     # categorical code logits (0 = none)
        q_cont: int = bounded(2, le=MAX_WIDTH)                       # continuous code means (0 = none)
        trunk: str = "shared"                                            # shared: heads on D's features (the paper); own: a DCGAN D trunk of its own
        resolution: int = resolution_field(32, 8)                        # input H = W, a power of two >= 8
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)                # input image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)                     # D's first-layer channels (sizes the features either way)
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)               # cap on any layer's channels
        norm: str = field(default="batch", metadata={"choices": NORMS})  # own trunk: on all convs but the first
        num_classes: int = bounded(0, ge=0, le=MAX_CLASSES)              # own trunk: conditional like D (one-hot label maps)
        init_std: float = bounded(0.02, gt=0)                            # N(0, std) weight init
        spectral_norm: bool = False                                      # spectral normalization of every Q weight

        def __post_init__(self):
            _check_trunk(self)
            check_q_config(self)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg, self.num_classes = cfg, cfg.num_classes
        width = _check_trunk(cfg)
        own = nn.Sequential(*_d_trunk(cfg, cfg.channels + cfg.num_classes)) if cfg.trunk == "own" else None
        self.init_q(cfg, own, width * 16)
        self.finish(cfg)

    d_input = DCGANDiscriminator.d_input
