"""Autograd for the Triton modulated convolution: every derivative is again one of the two kernels.

ScaledConv: y = s_out * conv(s_in * x, w) (see triton_impl). Its gradients, with g = dL/dy:
  dx     = s_in * conv_adjoint(s_out * g, w^T)        (the same kernel, geometry flipped)
  ds_in  = sum_q x * conv_adjoint(s_out * g, w^T)
  dw     = WeightGrad(x, g; s_in, s_out)               (the weight-gradient kernel)
  ds_out = sum_q g * y / s_out                         (s_out is the demodulation factor, > 0)
WeightGrad is bilinear in (s_in x, s_out g), so its own gradients are ScaledConv calls again. The
backward graph therefore contains only first-order kernels and elementwise ops, and differentiating
it (path-length regularization differentiates G's backward) never needs a second-order convolution.
"""
from __future__ import annotations

import torch

from ..conv2d import weight_grad_enabled


def adjoint(geom, in_size):
    """The geometry whose convolution is the adjoint of `geom`'s (strided <-> transposed)."""
    stride, pad_y, pad_x, transposed, _, _ = geom
    return (stride, pad_y, pad_x, not transposed, in_size[0], in_size[1])


def _scale(t, s):
    return t if s is None else t * s[:, :, None, None].to(t.dtype)


def _channel_sum(a, b, dtype):
    acc = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)  # fp32 at least
    return (a.to(acc) * b.to(acc)).sum((2, 3)).to(dtype)


class ScaledConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, s_in, s_out, geom, lib):
        y = lib.conv(x, w, s_in, s_out, geom)
        ctx.save_for_backward(x, w, s_in, s_out, y if s_out is not None else None)
        ctx.geom, ctx.lib = geom, lib
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, s_in, s_out, y = ctx.saved_tensors
        need_x, need_w, need_sin, need_sout = ctx.needs_input_grad[:4]
        dx = dw = ds_in = ds_out = None
        if need_x or need_sin:
            dxu = ScaledConv.apply(g, w.transpose(0, 1), s_out, None, adjoint(ctx.geom, x.shape[2:]), ctx.lib)
            dx = _scale(dxu, s_in) if need_x else None
            ds_in = _channel_sum(dxu, x, s_in.dtype) if need_sin else None
        if need_w and weight_grad_enabled():  # off inside no_weight_grad() (path-length's input gradient)
            dw = WeightGrad.apply(x, g, s_in, s_out, ctx.geom, ctx.lib, tuple(w.shape[2:])).to(w.dtype)
        if need_sout:
            ds_out = _channel_sum(g, y, s_out.dtype) / s_out
        return dx, dw, ds_in, ds_out, None, None


class WeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, s_in, s_out, geom, lib, kernel):
        ctx.save_for_backward(x, g, s_in, s_out)
        ctx.geom, ctx.lib = geom, lib
        return lib.wgrad(x, g, s_in, s_out, geom, kernel)

    @staticmethod
    def backward(ctx, ddw):
        x, g, s_in, s_out = ctx.saved_tensors
        need_x, need_g, need_sin, need_sout = ctx.needs_input_grad[:4]
        d_x = d_g = d_sin = d_sout = None
        if need_x or need_sin:  # dw is linear in s_in x: its partner is s_out g through the adjoint
            xu = ScaledConv.apply(g, ddw.transpose(0, 1), s_out, None, adjoint(ctx.geom, x.shape[2:]), ctx.lib)
            d_x = _scale(xu, s_in) if need_x else None
            d_sin = _channel_sum(xu, x, s_in.dtype) if need_sin else None
        if need_g or need_sout:
            gu = ScaledConv.apply(x, ddw, s_in, None, ctx.geom, ctx.lib)
            d_g = _scale(gu, s_out) if need_g else None
            d_sout = _channel_sum(gu, g, s_out.dtype) if need_sout else None
        return d_x, d_g, d_sin, d_sout, None, None, None


def scaled_conv(lib, x, w, s_in, s_out, geom):
    """ScaledConv with the scale vectors made contiguous fp32 [N, C] (the kernels index them n * C + c)."""
    s_in = None if s_in is None else s_in.float().contiguous()
    s_out = None if s_out is None else s_out.float().contiguous()
    return ScaledConv.apply(x, w, s_in, s_out, geom, lib)
