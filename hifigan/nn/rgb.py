"""toRGB and fromRGB: 1x1 projections between feature maps and image channels, one per
resolution (Karras et al. 2018, ProGAN, arXiv:1710.10196). In StyleGAN2 (arXiv:1912.04958)
toRGB is a modulated 1x1 convolution without demodulation, and the skip generator sums the
upsampled toRGB outputs of every resolution.
"""
from __future__ import annotations

import torch
from torch import nn

from hifigan.nn.equalized import EqualConv2d
from hifigan.nn.modconv import ModulatedConv2d


class ToRGB(nn.Module):
    """features [N, C, H, W] (+ w [N, w_dim] when style-modulated) -> image [N, img_channels, H, W]."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int | None = None, clamp: float | None = None):
        super().__init__()
        self.modulated = w_dim is not None
        if self.modulated:
            self.conv = ModulatedConv2d(in_channels, img_channels, 1, w_dim, demodulate=False,
                                        activation="linear", clamp=clamp)
        else:
            self.conv = EqualConv2d(in_channels, img_channels, 1, clamp=clamp)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None, fused: bool | None = None) -> torch.Tensor:
        return self.conv(x, w, fused=fused) if self.modulated else self.conv(x)


def from_rgb(img_channels: int, out_channels: int, activation: str = "lrelu", clamp: float | None = None) -> EqualConv2d:
    """image [N, img_channels, H, W] -> features [N, out_channels, H, W]."""
    return EqualConv2d(img_channels, out_channels, 1, activation=activation, clamp=clamp)
