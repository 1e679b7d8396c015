"""The autograd for the fused bias_act kernels, shared by the Triton and the CUDA implementation.

A launcher (triton_impl or cuda_impl) provides two elementwise passes over dense tensors that share
one layout (elements addressed by storage offset; channel = (offset // stride_c) % C):
  fwd(x, b, y, C, stride_c, spec)                   y  = clamp(act(x + b) * gain)
  bwd(g, x, b, y, out, C, stride_c, spec, from_z)   out = g * gain * act'(z) * [|y| < clamp]
For linear / relu / lrelu with gain > 0 the slope is a function of y alone (y > 0 <=> z > 0), so
only y is kept for backward; the others keep x (and b) and recompute z = x + b. The backward is
itself an autograd Function: its derivative with respect to the incoming gradient is the same
pass, and with respect to z it is g * g' * gain * act''(z), zero for the piecewise-linear
activations and written in torch ops for the smooth ones. So R1 and path-length penalties
(double backward) run through the kernels, and any higher order is still exact.
"""
from __future__ import annotations

import torch

from ..dispatch import dense
from .reference import ACTIVATIONS

CODES = {name: i for i, name in enumerate(ACTIVATIONS)}  # linear 0, relu 1, lrelu 2, tanh 3, sigmoid 4, silu 5
PIECEWISE = ("linear", "relu", "lrelu")


class Spec:
    """What one call computes; `from_z` = the backward needs x + b rather than y."""
    __slots__ = ("act", "code", "alpha", "gain", "clamp", "clamp_mask", "dim", "from_z")

    def __init__(self, act: str, alpha: float, gain: float, clamp: float | None, dim: int,
                 dtype: torch.dtype = torch.float32):
        self.act, self.code, self.alpha, self.gain, self.clamp, self.dim = act, CODES[act], float(alpha), float(gain), clamp, dim
        self.from_z = act not in PIECEWISE or gain <= 0
        # backward passes the gradient where |y| < clamp as stored: a clamped y holds the clamp rounded
        # to y's dtype, so that rounded value is the threshold (0.7 is 0.69921875 in bf16)
        self.clamp_mask = None if clamp is None else float(torch.tensor(float(clamp), dtype=dtype))


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """t in ref's memory layout (the kernels index every operand by the same storage offset)."""
    if t.stride() == ref.stride() or t.numel() <= 1:
        return t
    return torch.empty_like(ref, dtype=t.dtype).copy_(t)


def _channel(x: torch.Tensor, dim: int) -> tuple[int, int]:
    return x.shape[dim], max(x.stride(dim), 1)


def _reduce_bias(dz: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    dims = [d for d in range(dz.ndim) if d != dim]
    return dz.sum(dims, dtype=torch.float32).to(dtype) if dims else dz.to(dtype)


def _second_derivative(z: torch.Tensor, act: str) -> torch.Tensor:
    if act == "tanh":
        t = torch.tanh(z)
        return -2 * t * (1 - t * t)
    s = torch.sigmoid(z)
    if act == "sigmoid":
        return s * (1 - s) * (1 - 2 * s)
    return s * (1 - s) * (2 + z * (1 - 2 * s))  # silu


class BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, spec: Spec, lib):
        x = dense(x)
        C, stride_c = _channel(x, spec.dim)
        y = torch.empty_like(x)
        lib.fwd(x, b, y, C, stride_c, spec)
        keep_y = not spec.from_z or spec.clamp is not None
        ctx.save_for_backward(x if spec.from_z else None, b if spec.from_z else None, y if keep_y else None)
        ctx.spec, ctx.lib, ctx.has_b = spec, lib, b is not None
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b, y = ctx.saved_tensors
        dx = BiasActGrad.apply(dy, x, b, y, ctx.spec, ctx.lib)
        db = _reduce_bias(dx, ctx.spec.dim, dx.dtype) if ctx.has_b and ctx.needs_input_grad[1] else None
        return dx, db, None, None


class BiasActGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dy, x, b, y, spec: Spec, lib):
        ref = x if x is not None else y
        dy = _like(dense(dy), ref)
        dx = torch.empty_like(ref, dtype=dy.dtype)
        C, stride_c = _channel(ref, spec.dim)
        lib.bwd(dy, x, b, y, dx, C, stride_c, spec)
        smooth = spec.act not in PIECEWISE
        ctx.save_for_backward(dy if smooth else None, x, b, y)
        ctx.spec, ctx.lib = spec, lib
        return dx

    @staticmethod
    def backward(ctx, ddx):
        dy, x, b, y = ctx.saved_tensors
        spec = ctx.spec
        d_dy = BiasActGrad.apply(ddx, x, b, y, spec, ctx.lib) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if dy is not None and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            z = x if b is None else x + b.reshape([-1 if d == spec.dim % x.ndim else 1 for d in range(x.ndim)])
            d_z = ddx * dy * (spec.gain * _second_derivative(z.float(), spec.act)).to(ddx.dtype)
            if spec.clamp is not None:
                d_z = d_z * (y.abs() < spec.clamp_mask).to(d_z.dtype)
            d_x = d_z if ctx.needs_input_grad[1] else None
            d_b = _reduce_bias(d_z, spec.dim, b.dtype) if b is not None and ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None, None, None


def bias_act(lib, x, b, dim, act, alpha, gain, clamp):
    """The fused op through `lib`; b is cast to x's dtype first, as in the reference."""
    spec = Spec(act, alpha, gain, clamp, dim % x.ndim, x.dtype)
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[spec.dim]:
            raise ValueError(f"bias_act: b has shape {tuple(b.shape)}, expected [{x.shape[spec.dim]}] "
                             f"(the size of x along dim {dim})")
        b = b.to(x.dtype)
    return BiasAct.apply(x, b, spec, lib)
