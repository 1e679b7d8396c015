"""Bias + activation + gain (+ clamp): y = clamp(act(x + b) * gain, -clamp, clamp).

The gains keep activations at unit variance for unit-variance inputs (He et al. 2015,
arXiv:1502.01852): sqrt(2) for ReLU and leaky ReLU, as ProGAN and StyleGAN use with equalized
learning rate. The clamp bounds fp16 activations (StyleGAN2-ADA, Karras et al. 2020,
arXiv:2006.06676, "conv_clamp"). This is the plain PyTorch reference; fused kernels come in
kernels/bias_act.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# name -> (function of x and the slope, default gain)
ACTIVATIONS = {
    "linear": (lambda x, a: x, 1.0),
    "relu": (lambda x, a: F.relu(x), math.sqrt(2)),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 1.0),
    "silu": (lambda x, a: F.silu(x), 1.0),
}


def check_activation(name: str) -> str:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r} is not allowed (choose from {', '.join(ACTIVATIONS)})")
    return name


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float = 0.2, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """`b` [x.shape[dim]] is added along `dim`; `gain` None = the activation's default gain."""
    fn, default_gain = ACTIVATIONS[check_activation(act)]
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = fn(x, alpha)
    g = default_gain if gain is None else gain
    if g != 1:
        x = x * g
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
