"""Modulated convolution with weight demodulation (Karras et al. 2020, "Analyzing and Improving
the Image Quality of StyleGAN", arXiv:1912.04958, section 2.2): the StyleGAN2 layer.

The op itself (reference grouped convolution and the fused Triton kernels, chosen by `impl`) is in
kernels/modconv; this module adds the style affine, noise, bias and activation around it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hifigan.kernels.modconv import demod_coefficients, modulated_conv2d
from hifigan.nn.activation import ACTIVATIONS, bias_act
from hifigan.nn.equalized import EqualLinear

__all__ = ["ModulatedConv2d", "demod_coefficients", "modulated_conv2d"]


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
