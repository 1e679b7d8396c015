"""Feature normalizations of the high-resolution lineage.

Pixel norm (Karras et al. 2018, ProGAN, arXiv:1710.10196, section 4.2): each pixel's feature
vector scaled to unit RMS, x / sqrt(mean_c x^2 + eps); also normalizes StyleGAN's z.
AdaIN (Huang & Belongie 2017, arXiv:1703.06868, as StyleGAN uses it, Karras et al. 2019,
arXiv:1812.04948): instance-normalize each channel, then scale and shift it by the style y = (y_s, y_b).
Cross-replica batch norm (BigGAN, Brock et al. 2019, arXiv:1809.11096, appendix C; "synchronized
BN"): batch statistics of the global batch, summed over ranks by a differentiable all-reduce the
distribution layer registers (`set_cross_replica_sum`; the backend does it, a model never imports
torch.distributed). Conditional batch norm (de Vries et al. 2017, arXiv:1707.00683; Dumoulin et al.
2017): parameter-free batch norm, then a per-sample scale 1 + gamma(y) and shift beta(y) predicted
from the class (or BigGAN's class embedding concatenated with a chunk of z).
SPADE (Park et al. 2019, "Semantic Image Synthesis with Spatially-Adaptive Normalization",
arXiv:1903.07291, section 3): parameter-free (cross-replica) batch norm, then a per-pixel scale
1 + gamma and shift beta, convolutions of the label map resized (nearest) to the features' size.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

_CROSS_REPLICA_SUM: Callable[[torch.Tensor], torch.Tensor] | None = None


def set_cross_replica_sum(fn: Callable[[torch.Tensor], torch.Tensor] | None) -> None:
    """Register the differentiable sum over ranks that cross-replica batch norms use in training
    (None: one process, local statistics). Every rank must run the same BN forwards in step."""
    global _CROSS_REPLICA_SUM
    _CROSS_REPLICA_SUM = fn


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


class CrossReplicaBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training statistics are those of the global batch when a cross-replica
    sum is registered: mean = sum x / count, then var = sum (x - mean)^2 / count (two reductions,
    the same two passes one process makes, so two ranks equal one process on the same data).
    Running statistics (momentum, or a cumulative average with momentum None) as nn.BatchNorm2d."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduce = _CROSS_REPLICA_SUM
        if not self.training or reduce is None:
            return super().forward(x)
        c = x.shape[1]
        count = reduce(x.new_tensor([x.numel() / c], dtype=torch.float32)).to(x.dtype)
        mean = reduce(x.sum((0, 2, 3))) / count                                   # [C]
        var = reduce((x - mean[None, :, None, None]).square().sum((0, 2, 3))) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                f = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), f)
                unbiased = var.detach() * count / (count - 1).clamp_min(1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), f)
        y = (x - mean[None, :, None, None]) * (var[None, :, None, None] + self.eps).rsqrt()
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without its own affine, then x_hat * (1 + gain(y)) + bias(y) per sample.
    `gain` and `bias` map the condition y to [N, C]: nn.Embedding for class ids (SAGAN), a
    (spectrally normalized) linear layer without bias for BigGAN's shared embedding + z chunk."""

    def __init__(self, channels: int, gain: nn.Module, bias: nn.Module, eps: float = 1e-5,
                 momentum: float = 0.1, cross_replica: bool = True):
        super().__init__()
        bn = CrossReplicaBatchNorm2d if cross_replica else nn.BatchNorm2d
        self.bn = bn(channels, eps=eps, momentum=momentum, affine=False)
        self.gain, self.bias = gain, bias

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        g = 1 + self.gain(y).to(x.dtype)
        b = self.bias(y).to(x.dtype)
        return self.bn(x) * g[:, :, None, None] + b[:, :, None, None]


class SPADE(nn.Module):
    """Spatially-adaptive normalization: x [N, C, H, W], seg [N, label_channels, h, w] (one-hot labels,
    any size) -> norm(x) * (1 + gamma(seg)) + beta(seg), gamma and beta [N, C, H, W] from
    seg -> conv(hidden) -> ReLU -> conv(C) each (one shared hidden layer, two heads; no spectral norm,
    as in the paper's code). The norm has no affine of its own: gamma, beta are the whole modulation."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 128, kernel_size: int = 3,
                 eps: float = 1e-5, momentum: float = 0.1, cross_replica: bool = True):
        super().__init__()
        bn = CrossReplicaBatchNorm2d if cross_replica else nn.BatchNorm2d
        self.norm = bn(channels, eps=eps, momentum=momentum, affine=False)
        pad = kernel_size // 2
        self.shared = nn.Conv2d(label_channels, hidden, kernel_size, padding=pad)
        self.gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def modulation(self, seg: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta), each [N, C, *size], from the label map resized (nearest) to `size`."""
        if tuple(seg.shape[2:]) != tuple(size):
            seg = F.interpolate(seg, size=tuple(size), mode="nearest")
        h = F.relu(self.shared(seg))
        return self.gamma(h), self.beta(h)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.modulation(seg.to(x.dtype), x.shape[2:])
        return self.norm(x) * (1 + gamma) + beta
