"""Equalized learning rate (Karras et al. 2018, "Progressive Growing of GANs for Improved
Quality, Stability, and Variation", arXiv:1710.10196, section 4.1).

Weights are stored as N(0, 1) / lr_mul and scaled at run time by lr_mul * gain / sqrt(fan_in),
so every layer's effective learning rate under Adam is the same (Adam's step is invariant to the
gradient's scale, so the runtime factor sets the step size in weight space). `lr_mul` lowers one
layer's learning rate: StyleGAN's mapping network uses 0.01 (Karras et al. 2019, arXiv:1812.04948,
appendix C). Biases are stored as bias_init / lr_mul and multiplied by lr_mul.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hifigan.kernels.conv2d import conv2d
from hifigan.nn.activation import bias_act, check_activation


class EqualLinear(nn.Module):
    """x [N, in] -> act(x W^T * scale + b) [N, out]."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str = "linear", gain: float = 1.0):
        super().__init__()
        self.activation = check_activation(activation)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init) / lr_mul)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale
        b = None if self.bias is None else self.bias * self.lr_mul
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.to(x.dtype).unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        o, i = self.weight.shape
        return f"in={i}, out={o}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Same-padded k x k convolution with equalized learning rate, bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", gain: float = 1.0, lr_mul: float = 1.0, clamp: float | None = None):
        super().__init__()
        self.activation = check_activation(activation)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = gain * lr_mul / math.sqrt(in_channels * kernel_size ** 2)
        self.lr_mul, self.padding, self.clamp = lr_mul, kernel_size // 2, clamp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.scale
        x = conv2d(x, w, padding=self.padding)  # on CUDA: first-order-only backward (kernels/conv2d)
        b = None if self.bias is None else self.bias * self.lr_mul
        return bias_act(x, b, act=self.activation, clamp=self.clamp)

    def extra_repr(self) -> str:
        o, i, k, _ = self.weight.shape
        return f"{i}, {o}, k={k}, act={self.activation}"
