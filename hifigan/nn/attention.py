"""Self-attention over feature-map positions (SAGAN: Zhang et al. 2019, "Self-Attention Generative
Adversarial Networks", arXiv:1805.08318, section 3), as BigGAN uses it (Brock et al. 2019,
arXiv:1809.11096) with BigGAN-PyTorch's layout:

    f = theta(x)  [N, C/8, HW]         queries, every position
    g = phi(x)    [N, C/8, HW/4]       keys, 2x2 max-pooled (4x fewer positions to attend to)
    h = g(x)      [N, C/2, HW/4]       values, 2x2 max-pooled
    beta = softmax_keys(f^T g)         [N, HW, HW/4]
    y = x + gamma * o(h beta^T)        o: C/2 -> C

All four maps are bias-free 1x1 convolutions, spectrally normalized (Miyato et al. 2018,
arXiv:1802.05957); gamma is one scalar initialized to 0, so a new block is the identity and the
network learns how much non-local evidence to mix in (section 3). Parameters: C^2 (2/8 + 2/2) + 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hifigan.nn.spectral import SpectralNorm


class SelfAttention(nn.Module):
    """x [N, C, H, W] (H, W even) -> x + gamma * attention(x), same shape."""

    def __init__(self, channels: int, spectral_norm: bool = True, sn_eps: float = 1e-12):
        super().__init__()
        if channels < 8 or channels % 8:
            raise ValueError(f"self-attention needs channels a multiple of 8 (queries and keys have C/8), "
                             f"got {channels}")
        self.channels = channels

        def conv(c_in: int, c_out: int) -> nn.Module:
            layer = nn.Conv2d(c_in, c_out, 1, bias=False)
            return SpectralNorm(layer, eps=sn_eps) if spectral_norm else layer

        self.theta = conv(channels, channels // 8)
        self.phi = conv(channels, channels // 8)
        self.g = conv(channels, channels // 2)
        self.o = conv(channels // 2, channels)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"self-attention pools keys and values 2x2: H and W must be even, got {h}x{w}")
        theta = self.theta(x).flatten(2)                  # [N, C/8, HW]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)     # [N, C/8, HW/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)         # [N, C/2, HW/4]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [N, HW, HW/4]: each query's weights over keys
        o = self.o((g @ beta.transpose(1, 2)).view(n, c // 2, h, w))
        return x + self.gamma * o

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
