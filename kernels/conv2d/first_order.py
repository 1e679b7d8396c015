"""Convolution whose backward is made of first-order convolutions, so double backward is too.

R1 (Mescheder et al. 2018, arXiv:1801.04406) differentiates ||grad_x D(x)||^2 with respect to D's
weights, and path-length regularization (StyleGAN2, arXiv:1912.04958) differentiates G's input
gradient: both run the backward of every convolution backwards again. With torch's own autograd
that second pass is aten::_convolution_double_backward, for which cuDNN picks slow kernels (92%
of a StyleGAN2 step on an H100 in this project's profile). The adjoint of a convolution is a
transposed convolution with the same weight (and vice versa), and the weight gradient is linear
in both of its inputs, so:

  y  = conv(x, w)
  dx = conv_adjoint(g, w)                       Conv again, geometry flipped
  dw = WeightGrad(x, g)                         aten weight-gradient kernel
       d/dg <ddw, dw> = conv(x, ddw),  d/dx <ddw, dw> = conv_adjoint(g, ddw)

Every node of the backward graph is a forward convolution or a weight gradient, whose own
derivatives are again forward convolutions: any order, first-order kernels only.

no_weight_grad(): inside it, weight gradients are not computed. The R1 and path-length passes
take gradients with respect to the images or the latents only; torch's built-in convolution knows
which outputs the engine needs, a custom Function does not (needs_input_grad is fixed at forward
time), so the objectives say it explicitly.
"""
from __future__ import annotations

import contextlib

import torch

from .reference import conv2d_reference

_weight_grad = True


@contextlib.contextmanager
def no_weight_grad():
    """Skip the weight gradients of the kernels' convolutions (kernels/conv2d, kernels/modconv)."""
    global _weight_grad
    old, _weight_grad = _weight_grad, False
    try:
        yield
    finally:
        _weight_grad = old


def weight_grad_enabled() -> bool:
    return _weight_grad


def adjoint(geom, x_shape, g_shape, kernel):
    """The geometry of the convolution that maps grad(y) back to x's shape (strided <-> transposed)."""
    transposed, stride, padding, output_padding, groups = geom
    if transposed:
        return (False, stride, padding, (0, 0), groups)
    # conv_transpose output = (g - 1) * stride - 2 * padding + k + output_padding must equal x
    op = tuple(x_shape[2 + i] - ((g_shape[2 + i] - 1) * stride[i] - 2 * padding[i] + kernel[i]) for i in range(2))
    return (True, stride, padding, op, groups)


class Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, geom):
        ctx.save_for_backward(x, w)
        ctx.geom = geom
        return conv2d_reference(x, w, geom)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = Conv.apply(g, w, adjoint(ctx.geom, x.shape, g.shape, w.shape[2:]))
        if ctx.needs_input_grad[1] and _weight_grad:
            dw = WeightGrad.apply(x, g, w, ctx.geom)
        return dx, dw, None


class WeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, w, geom):
        ctx.save_for_backward(x, g)
        ctx.geom = geom
        transposed, stride, padding, output_padding, groups = geom
        return torch.ops.aten.convolution_backward(g, x, w, None, stride, padding, (1, 1), transposed,
                                                   output_padding, groups, (False, True, False))[1]

    @staticmethod
    def backward(ctx, ddw):
        x, g = ctx.saved_tensors
        d_x = d_g = None
        if ctx.needs_input_grad[0]:
            d_x = Conv.apply(g, ddw, adjoint(ctx.geom, x.shape, g.shape, ddw.shape[2:]))
        if ctx.needs_input_grad[1]:
            d_g = Conv.apply(x, ddw, ctx.geom)
        return d_x, d_g, None, None


def conv2d_first_order(x, w, geom):
    return Conv.apply(x, w, geom)
