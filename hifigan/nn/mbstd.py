"""Minibatch standard deviation (Karras et al. 2018, ProGAN, arXiv:1710.10196, section 3).

Split the batch into groups of G samples; per group, the standard deviation of every feature
and pixel over the G samples, averaged over features (in `num_channels` slices) and pixels, is
appended to every sample as `num_channels` constant feature maps. D can then see a lack of
variety within a batch. StyleGAN2 uses G = 4, one channel.
"""
from __future__ import annotations

import torch
from torch import nn


def group_size_for(n: int, group_size: int) -> int:
    """The largest g <= group_size that divides the batch n (the whole batch when n < group_size)."""
    g = min(group_size, n)
    while n % g:
        g -= 1
    return g


def minibatch_std(x: torch.Tensor, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C + num_channels, H, W]."""
    N, C, H, W = x.shape
    G, F = group_size_for(N, group_size), num_channels
    y = x.float().reshape(G, N // G, F, C // F, H, W)   # sample n is in group n % (N // G)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + eps).sqrt()           # [N/G, F, C/F, H, W]
    y = y.mean(dim=[2, 3, 4])                            # [N/G, F]
    y = y.reshape(-1, F, 1, 1).repeat(G, 1, H, W).to(x.dtype)  # [N, F, H, W]
    return torch.cat([x, y], dim=1)


class MinibatchStd(nn.Module):
    def __init__(self, group_size: int = 4, num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return minibatch_std(x, self.group_size, self.num_channels)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
