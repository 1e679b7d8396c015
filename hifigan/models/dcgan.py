"""DCGAN (Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", arXiv:1511.06434).

G: z -> 4x4 by a transposed convolution, then stride-2 transposed convolutions with batch norm
and ReLU, halving the channels as the resolution doubles, tanh at the output. D mirrors it:
stride-2 convolutions with LeakyReLU(0.2), batch norm on every layer but the first, one logit
from the final 4x4 map. No pooling, no fully connected hidden layers, weights from N(0, 0.02).
Conditional variants (cDCGAN) concatenate the one-hot class to z in G and as constant label maps
to the image channels in D.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.init import dcgan_init
from hifigan.registry import DISCRIMINATORS, GENERATORS


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
        z_dim: int = 100        # input latent size
        resolution: int = 32    # output H = W, a power of two >= 8
        channels: int = 1       # output image channels
        width: int = 64         # channels of the last hidden layer (ngf); doubled per level towards 4x4
        max_width: int = 1024   # cap on any layer's channels
        num_classes: int = 0    # > 0: conditional (one-hot concatenated to z)
        init_std: float = 0.02  # N(0, std) weight init

        def __post_init__(self):
            _levels(self.resolution)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
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

    def forward(self, z, c=None):
        if self.num_classes:
            if c is None:
                raise ValueError("this generator is conditional: pass class labels c")
            z = torch.cat([z, F.one_hot(c.long(), self.num_classes).to(z.dtype)], dim=1)
        return self.net(z[:, :, None, None])  # [N, C, H, W]


@DISCRIMINATORS.register("dcgan")
class DCGANDiscriminator(nn.Module):
    """img [N, channels, resolution, resolution] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config:
        resolution: int = 32    # input H = W, a power of two >= 8
        channels: int = 1       # input image channels
        width: int = 64         # channels of the first layer (ndf); doubled per level towards 4x4
        max_width: int = 1024   # cap on any layer's channels
        batch_norm: bool = True  # batch norm after every conv but the first (off for WGAN-GP critics)
        num_classes: int = 0    # > 0: conditional (one-hot label maps concatenated to the image)
        init_std: float = 0.02  # N(0, std) weight init

        def __post_init__(self):
            _levels(self.resolution)

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        n = _levels(cfg.resolution)
        ch = [min(cfg.width * 2 ** i, cfg.max_width) for i in range(n)]  # res/2 ... 4x4
        layers = [nn.Conv2d(cfg.channels + cfg.num_classes, ch[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not cfg.batch_norm)]
            layers += [nn.BatchNorm2d(c_out)] if cfg.batch_norm else []
            layers += [nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(ch[-1], 1, 4, 1, 0, bias=False)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, cfg.init_std)

    def forward(self, img, c=None):
        if self.num_classes:
            if c is None:
                raise ValueError("this discriminator is conditional: pass class labels c")
            maps = F.one_hot(c.long(), self.num_classes).to(img.dtype)[:, :, None, None]
            img = torch.cat([img, maps.expand(-1, -1, *img.shape[2:])], dim=1)
        return self.net(img).flatten()  # [N]
