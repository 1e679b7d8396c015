"""Convolution (plain or transposed) with a first-order-only backward graph on CUDA.

    from hifigan.kernels.conv2d import conv2d, no_weight_grad
    y = conv2d(x, w, stride=2, padding=0, groups=1, transposed=False, impl="auto")

impl "reference": F.conv2d / F.conv_transpose2d with torch's autograd (double backward through
aten::_convolution_double_backward). impl "cuda": the same forward through cuDNN, with the
backward written as forward convolutions and weight gradients (first_order.py), so R1 and path
length never reach the second-order convolution; auto takes it for CUDA tensors. There is no
Triton impl of the plain convolution (cuDNN is the fast path; kernels/modconv has the Triton
implicit GEMM for the modulated one).
"""
from __future__ import annotations

from .. import dispatch
from .first_order import conv2d_first_order, no_weight_grad, weight_grad_enabled
from .reference import conv2d_reference

__all__ = ["conv2d", "conv2d_reference", "no_weight_grad", "weight_grad_enabled"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv2d(x, w, stride=1, padding=0, groups: int = 1, transposed: bool = False, output_padding=0,
           impl: str | None = None):
    """x [N, C, H, W]; w [O, C/groups, kh, kw] (transposed: [C, O/groups, kh, kw], as torch takes them)."""
    geom = (bool(transposed), _pair(stride), _pair(padding), _pair(output_padding), int(groups))
    return dispatch.run("conv2d", impl, (x, w), {"cuda": conv2d_first_order}, conv2d_reference, x, w, geom)
