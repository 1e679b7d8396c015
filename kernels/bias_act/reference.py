"""bias_act reference: y = clamp(act(x + b) * gain, -clamp, clamp), in plain PyTorch.

The gains keep activations at unit variance for unit-variance inputs (He et al. 2015,
arXiv:1502.01852): sqrt(2) for ReLU and leaky ReLU, as ProGAN and StyleGAN use with equalized
learning rate. The clamp bounds fp16 activations (StyleGAN2-ADA, Karras et al. 2020,
arXiv:2006.06676, "conv_clamp"). `bias_act_reference` is the specification and the test oracle;
`bias_act_lean` gives the same values with a backward that keeps only the output (below).
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


def bias_act_reference(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
                       alpha: float = 0.2, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """The specification: `b` [x.shape[dim]] is added along `dim`; `gain` None = the activation's default gain."""
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


# -- memory-lean autograd for the piecewise-linear activations ---------------------------------
# The plain expression (bias_act_reference) keeps x + b, act(.) and the gained copy for backward (three
# activation-sized tensors per layer). For linear / relu / lrelu the derivative is a function of
# the output alone (y > 0 <=> x + b > 0 since gain > 0; clamped where |y| reached the clamp), so
# this path saves only y. Its backward is written in differentiable ops that treat that mask as
# constant, which is exact: the second derivative of a piecewise-linear function is zero almost
# everywhere, so R1 and path-length penalties differentiate through it correctly.

def _slope(y: torch.Tensor, act: str, alpha: float, gain: float, clamp: float | None) -> torch.Tensor:
    if act == "linear":
        m = torch.full_like(y, gain)
    elif act == "relu":  # y == 0 exactly where x + b <= 0
        m = (y > 0).to(y.dtype) * gain
    else:
        m = torch.where(y > 0, torch.full_like(y, gain), torch.full_like(y, gain * alpha))  # z = 0: slope, as F.leaky_relu
    if clamp is not None:
        m = m * (y.abs() < torch.tensor(float(clamp), dtype=y.dtype)).to(y.dtype)  # clamped y = clamp rounded
    return m


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, dim, act, alpha, gain, clamp):
        y = x if b is None else x + _along(b.to(x.dtype), x.ndim, dim)
        if act == "lrelu":
            y = F.leaky_relu(y, alpha)
        elif act == "relu":
            y = F.relu(y)
        if gain != 1:
            y = y * gain
        if clamp is not None:
            y = y.clamp(-clamp, clamp)
        ctx.save_for_backward(y)
        ctx.cfg = (dim, act, alpha, gain, clamp, b is not None, None if b is None else b.dtype)
        return y

    @staticmethod
    def backward(ctx, dy):
        y, = ctx.saved_tensors
        dim, act, alpha, gain, clamp, has_b, b_dtype = ctx.cfg
        dx = dy * _slope(y, act, alpha, gain, clamp)
        db = None
        if has_b and ctx.needs_input_grad[1]:
            db = dx.sum(dim=[d for d in range(dx.ndim) if d != dim % dx.ndim]).to(b_dtype)
        return dx, db, None, None, None, None, None


def _along(b: torch.Tensor, ndim: int, dim: int) -> torch.Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return b.reshape(shape)


def bias_act_lean(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float = 0.2, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """bias_act_reference's values with the memory-lean backward for linear / relu / lrelu when
    autograd is recording (others, and inference: the plain form)."""
    g = ACTIVATIONS[check_activation(act)][1] if gain is None else gain
    if act not in ("linear", "relu", "lrelu") or g <= 0 or not torch.is_grad_enabled():
        return bias_act_reference(x, b, dim, act, alpha, gain, clamp)
    return _BiasAct.apply(x, b, dim, act, alpha, float(g), clamp)
