"""The synthesis network's inputs besides the style: the learned constant and per-layer noise
(Karras et al. 2019, StyleGAN, arXiv:1812.04948, sections 2 and 3.2).

Noise is one N(0, 1) value per pixel, broadcast over channels and scaled by a learned strength
(per channel in StyleGAN, one scalar in StyleGAN2). noise_mode "random" draws fresh noise,
"const" uses a fixed buffer drawn at construction (deterministic samples), "none" adds nothing.
"""
from __future__ import annotations

import torch
from torch import nn

NOISE_MODES = ("random", "const", "none")


class NoiseInjection(nn.Module):
    def __init__(self, resolution: int, channels: int = 1):
        super().__init__()
        self.strength = nn.Parameter(torch.zeros(channels) if channels > 1 else torch.zeros([]))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))

    def noise(self, x: torch.Tensor, mode: str) -> torch.Tensor | None:
        """The term to add to x [N, C, H, W] (None for mode "none")."""
        if mode == "none":
            return None
        N, C, H, W = x.shape
        if mode == "random":
            n = torch.randn(N, 1, H, W, device=x.device, dtype=x.dtype)
        elif mode == "const":
            n = self.noise_const.to(x.dtype)[None, None]
        else:
            raise ValueError(f"noise_mode {mode!r} is not allowed (choose from {', '.join(NOISE_MODES)})")
        s = self.strength.to(x.dtype)
        return n * (s[None, :, None, None] if s.ndim else s)

    def forward(self, x: torch.Tensor, mode: str = "random") -> torch.Tensor:
        n = self.noise(x, mode)
        return x if n is None else x + n


class ConstantInput(nn.Module):
    """The synthesis network's learned 4x4 starting tensor, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.const = nn.Parameter(torch.randn(channels, size, size))

    def forward(self, n: int, dtype=None) -> torch.Tensor:
        return self.const.to(dtype or self.const.dtype)[None].expand(n, -1, -1, -1)
