"""The vanilla MLP GAN (Goodfellow et al. 2014, "Generative Adversarial Nets", arXiv:1406.2661).

G maps z (optionally concatenated with a one-hot class, as in Mirza & Osindero 2014, cGAN,
arXiv:1411.1784) through fully connected layers to a tanh image; D maps the flattened image
(plus the one-hot class) through fully connected LeakyReLU layers to one logit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.init import dcgan_init
from hifigan.registry import DISCRIMINATORS, GENERATORS


def _one_hot(c, num_classes: int, like: torch.Tensor):
    if num_classes == 0:
        return None
    if c is None:
        raise ValueError("this network is conditional: pass class labels c")
    return F.one_hot(c.long(), num_classes).to(like.dtype)


@GENERATORS.register("mlp")
class MLPGenerator(nn.Module):
    """Fully connected generator: z [N, z_dim] (+ c [N]) -> img [N, C, H, W] in [-1, 1]."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = 100                                            # input latent size
        hidden: list[int] = field(default_factory=lambda: [256, 512, 1024])  # hidden layer widths
        batch_norm: bool = False                                    # batch norm after each hidden layer
        resolution: int = 28                                        # output H = W
        channels: int = 1                                           # output image channels
        num_classes: int = 0                                        # > 0: conditional on a class label
        init_std: float = 0.02                                      # N(0, std) weight init

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.num_classes = cfg.z_dim, cfg.num_classes
        self.img_shape = (cfg.channels, cfg.resolution, cfg.resolution)
        layers, width = [], cfg.z_dim + cfg.num_classes
        for h in cfg.hidden:
            layers += [nn.Linear(width, h)]
            layers += [nn.BatchNorm1d(h)] if cfg.batch_norm else []
            layers += [nn.LeakyReLU(0.2)]
            width = h
        layers += [nn.Linear(width, cfg.channels * cfg.resolution ** 2), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, cfg.init_std)

    def forward(self, z, c=None):
        y = _one_hot(c, self.num_classes, z)
        x = z if y is None else torch.cat([z, y], dim=1)
        return self.net(x).view(z.shape[0], *self.img_shape)  # [N, C, H, W]


@DISCRIMINATORS.register("mlp")
class MLPDiscriminator(nn.Module):
    """Fully connected discriminator: img [N, C, H, W] (+ c [N]) -> logits [N]."""

    @dataclass(kw_only=True)
    class Config:
        hidden: list[int] = field(default_factory=lambda: [1024, 512, 256])  # hidden layer widths
        dropout: float = 0.0                                        # dropout after each hidden layer
        resolution: int = 28                                        # input H = W
        channels: int = 1                                           # input image channels
        num_classes: int = 0                                        # > 0: conditional on a class label
        init_std: float = 0.02                                      # N(0, std) weight init

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.num_classes = cfg.num_classes
        layers, width = [], cfg.channels * cfg.resolution ** 2 + cfg.num_classes
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.LeakyReLU(0.2)]
            layers += [nn.Dropout(cfg.dropout)] if cfg.dropout > 0 else []
            width = h
        layers += [nn.Linear(width, 1)]
        self.net = nn.Sequential(*layers)
        dcgan_init(self, cfg.init_std)

    def forward(self, img, c=None):
        x = img.flatten(1)
        y = _one_hot(c, self.num_classes, x)
        x = x if y is None else torch.cat([x, y], dim=1)
        return self.net(x).squeeze(1)  # [N]
