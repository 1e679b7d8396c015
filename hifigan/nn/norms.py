"""Feature normalizations of the high-resolution lineage.

Pixel norm (Karras et al. 2018, ProGAN, arXiv:1710.10196, section 4.2): each pixel's feature
vector scaled to unit RMS, x / sqrt(mean_c x^2 + eps); also normalizes StyleGAN's z.
AdaIN (Huang & Belongie 2017, arXiv:1703.06868, as StyleGAN uses it, Karras et al. 2019,
arXiv:1812.04948): instance-normalize each channel, then scale and shift it by the style y = (y_s, y_b).
"""
from __future__ import annotations

import torch
from torch import nn


def pixel_norm(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pixel_norm(x)


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[N, C, H, W]: zero mean, unit variance per sample and channel."""
    x = x - x.mean(dim=[2, 3], keepdim=True)
    return x * (x.square().mean(dim=[2, 3], keepdim=True) + eps).rsqrt()


def adain(x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W], style [N, 2C] = (scale, shift) -> instance_norm(x) * scale + shift."""
    scale, shift = style.to(x.dtype).chunk(2, dim=1)
    return instance_norm(x) * scale[:, :, None, None] + shift[:, :, None, None]
