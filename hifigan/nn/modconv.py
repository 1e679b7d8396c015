"""Modulated convolution with weight demodulation (Karras et al. 2020, "Analyzing and Improving
the Image Quality of StyleGAN", arXiv:1912.04958, section 2.2).

Per sample i, the shared weight w[o, c, k, k] is scaled by the style s_i[c] (modulation, which
replaces AdaIN's scaling) and each output filter is renormalized to unit L2 norm
(demodulation, which replaces instance normalization): w'_i = s_i * w, w''_i[o] = w'_i[o] /
sqrt(sum_{c,k} w'_i[o, c, k]^2 + eps). Two equivalent evaluations:
  fused: one grouped convolution over N per-sample weight tensors (the reference; memory N x |w|);
  not fused: scale the input channels by s, convolve with the shared w, scale the output channels
  by the demodulation factor (no per-sample weights; the factor depends only on s and w).
This is the plain PyTorch reference; the fused kernels come in kernels/modconv.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hifigan.nn.activation import ACTIVATIONS, bias_act
from hifigan.nn.equalized import EqualLinear
from hifigan.nn.fir import conv2d_resample


def demod_coefficients(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[N, O]: 1 / ||s_i * w[o]||, computed without materializing the per-sample weights."""
    return (styles.square() @ weight.square().sum([2, 3]).t() + eps).rsqrt()


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     up: int = 1, down: int = 1, resample_filter: torch.Tensor | None = None,
                     fused: bool = True) -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, k, k], styles [N, I] -> [N, O, H*up/down, W*up/down]."""
    N, I, H, W = x.shape
    O, _, k, _ = weight.shape
    w = weight.to(x.dtype)
    s = styles.to(x.dtype)
    if x.dtype == torch.float16 and demodulate:  # keep the products in fp16 range; demodulation undoes this
        w = w * (1 / math.sqrt(I * k * k) / w.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        s = s / s.norm(float("inf"), dim=1, keepdim=True)
    d = demod_coefficients(w.float(), s.float()).to(x.dtype) if demodulate else None  # [N, O]
    if not fused:
        x = x * s[:, :, None, None]
        x = conv2d_resample(x, w, resample_filter, up=up, down=down)
        return x * d[:, :, None, None] if d is not None else x
    wi = w[None] * s[:, None, :, None, None]  # [N, O, I, k, k]
    if d is not None:
        wi = wi * d[:, :, None, None, None]
    x = conv2d_resample(x.reshape(1, N * I, H, W), wi.reshape(N * O, I, k, k), resample_filter,
                        up=up, down=down, groups=N)
    return x.reshape(N, O, *x.shape[2:])


class ModulatedConv2d(nn.Module):
    """Style affine (w -> s, bias init 1) + modulated conv + bias + activation (+ clamp).
    Parameters: affine weight [I, w_dim] and bias [I], weight [O, I, k, k], bias [O]."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int, demodulate: bool = True,
                 up: int = 1, down: int = 1, activation: str = "lrelu", clamp: float | None = None,
                 resample_filter: torch.Tensor | None = None, weight_gain: float | None = None):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2) if weight_gain is None else weight_gain
        self.demodulate, self.up, self.down = demodulate, up, down
        self.activation, self.clamp = activation, clamp
        if resample_filter is not None:
            self.register_buffer("resample_filter", resample_filter, persistent=False)
        else:
            self.resample_filter = None

    def styles(self, w: torch.Tensor) -> torch.Tensor:
        return self.affine(w) * self.weight_gain  # [N, I]; the equalized-LR gain folded into s

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None,
                fused: bool | None = None, gain: float = 1.0) -> torch.Tensor:
        fused = (not self.training) if fused is None else fused
        x = modulated_conv2d(x, self.weight, self.styles(w), self.demodulate, self.up, self.down,
                             self.resample_filter, fused)
        if noise is not None:
            x = x + noise.to(x.dtype)
        clamp = None if self.clamp is None else self.clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=ACTIVATIONS[self.activation][1] * gain, clamp=clamp)
