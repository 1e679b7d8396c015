"""bias_act in Triton: one elementwise pass forward, one backward (see fused.py for the autograd).

Each program handles BLOCK consecutive storage offsets; the bias index is (offset // stride_c) % C,
which holds for any dense layout (contiguous, channels-last). Arithmetic is in fp32 whatever the
storage dtype; results are rounded once, on store.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ..dispatch import launch
from . import fused

BLOCK = 1024


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _tanh(z):
    e = tl.exp(-2.0 * tl.abs(z))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(z < 0, -t, t)


@triton.jit
def _act(z, alpha, ACT: tl.constexpr):
    if ACT == 1:
        z = tl.maximum(z, 0.0)
    elif ACT == 2:
        z = tl.where(z > 0, z, z * alpha)
    elif ACT == 3:
        z = _tanh(z)
    elif ACT == 4:
        z = _sigmoid(z)
    elif ACT == 5:
        z = z * _sigmoid(z)
    return z


@triton.jit
def _slope_z(z, alpha, ACT: tl.constexpr):
    """act'(z)."""
    if ACT == 0:
        d = tl.full(z.shape, 1.0, tl.float32)
    elif ACT == 1:
        d = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(z > 0, 1.0, alpha)
    elif ACT == 3:
        t = _tanh(z)
        d = 1.0 - t * t
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    else:
        s = _sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    return d


@triton.jit
def _slope_y(y, alpha, ACT: tl.constexpr):
    """act'(z) from y = act(z) * gain, gain > 0, for the piecewise-linear activations."""
    if ACT == 0:
        d = tl.full(y.shape, 1.0, tl.float32)
    elif ACT == 1:
        d = tl.where(y > 0, 1.0, 0.0)
    else:
        d = tl.where(y > 0, 1.0, alpha)
    return d


@triton.jit
def _offsets(n, BIG: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    if BIG:
        pid = pid.to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    return offs, offs < n


@triton.jit
def _fwd_kernel(x_ptr, b_ptr, y_ptr, n, C, stride_c, alpha, gain, clamp,
                ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, BIG: tl.constexpr,
                BLOCK: tl.constexpr):
    offs, m = _offsets(n, BIG, BLOCK)
    z = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if HAS_B:
        z += tl.load(b_ptr + (offs // stride_c) % C, mask=m, other=0.0).to(tl.float32)
    y = _act(z, alpha, ACT) * gain
    if HAS_CLAMP:
        y = tl.minimum(tl.maximum(y, -clamp), clamp)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _bwd_kernel(g_ptr, x_ptr, b_ptr, y_ptr, out_ptr, n, C, stride_c, alpha, gain, clamp_mask,
                ACT: tl.constexpr, FROM_Z: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr,
                BIG: tl.constexpr, BLOCK: tl.constexpr):
    offs, m = _offsets(n, BIG, BLOCK)
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    if FROM_Z:
        z = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
        if HAS_B:
            z += tl.load(b_ptr + (offs // stride_c) % C, mask=m, other=0.0).to(tl.float32)
        d = _slope_z(z, alpha, ACT)
    else:
        d = _slope_y(tl.load(y_ptr + offs, mask=m, other=0.0).to(tl.float32), alpha, ACT)
    d = d * gain
    if HAS_CLAMP:
        y = tl.load(y_ptr + offs, mask=m, other=0.0).to(tl.float32)
        d = tl.where(tl.abs(y) < clamp_mask, d, 0.0)
    tl.store(out_ptr + offs, (g * d).to(out_ptr.dtype.element_ty), mask=m)


def _grid(n):
    return (triton.cdiv(n, BLOCK),)


def fwd(x, b, y, C, stride_c, spec):
    n = x.numel()
    if n == 0:
        return
    launch(_fwd_kernel, _grid(n), x, b if b is not None else x, y, n, C, stride_c, spec.alpha, spec.gain,
           spec.clamp if spec.clamp is not None else 0.0, ACT=spec.code, HAS_B=b is not None,
           HAS_CLAMP=spec.clamp is not None, BIG=n >= 2 ** 31 - BLOCK, BLOCK=BLOCK)


def bwd(g, x, b, y, out, C, stride_c, spec):
    n = g.numel()
    if n == 0:
        return
    any_ = x if x is not None else y
    launch(_bwd_kernel, _grid(n), g, x if x is not None else any_, b if b is not None else any_,
           y if y is not None else any_, out, n, C, stride_c, spec.alpha, spec.gain,
           spec.clamp_mask if spec.clamp is not None else 0.0, ACT=spec.code, FROM_Z=spec.from_z,
           HAS_B=b is not None, HAS_CLAMP=spec.clamp is not None, BIG=n >= 2 ** 31 - BLOCK, BLOCK=BLOCK)


def bias_act(x, b, dim, act, alpha, gain, clamp):
    import sys
    return fused.bias_act(sys.modules[__name__], x, b, dim, act, alpha, gain, clamp)
