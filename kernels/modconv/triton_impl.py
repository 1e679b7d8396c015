"""Modulated convolution in Triton: implicit-GEMM kernels that apply the per-sample scales inside.

The heavy part of a modulated, demodulated convolution (StyleGAN2, arXiv:1912.04958, eq. 1-3) is

    y[n, o, q] = s_out[n, o] * sum_{i, t} w[o, i, t] * s_in[n, i] * x[n, i, src(q, t)]

with s_in the style and s_out the demodulation factor: one convolution with the shared weight, no
per-sample weight tensors (the grouped-conv reference materializes N of them). `src` is a plain
strided convolution (iy = oy*stride + ty - pad) or a transposed one (oy = iy*stride + ty - pad, i.e.
iy = (oy + pad - ty) / stride where divisible). Each is the other's adjoint, so the input gradient
is the same kernel with the weight transposed and the geometry flipped.

  _conv_kernel:  rows = output pixels (n, oy, ox), columns = output channels, reduction over
                 (ty, tx, input channel) in BLOCK_K chunks; s_in scales the gathered input tile and
                 s_out the accumulator (fp32) before the single rounding store.
  _wgrad_kernel: dw[o, i, t] = sum_{n, q} s_out g[n, o, q] * s_in x[n, i, src(q, t)]: rows = output
                 channels, columns = input channels, one tap per program column of the grid, the
                 pixel reduction split over SPLIT programs that add fp32 partial sums atomically;
                 for a transposed geometry it runs over input pixels (one partner each per tap).
  A transposed _conv_kernel launch has one grid slice per output phase (oy % S, ox % S), which
                 meets only ceil(K/S)^2 of the K^2 taps: no work on taps that are always zero.
Operands are addressed through their strides, so NCHW and channels-last both work (channels-last
makes the channel loads contiguous). bf16 / fp16 feed tl.dot directly; fp32 uses TF32 when
torch.backends.cudnn.allow_tf32 allows it for torch's own convolutions.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..dispatch import interpreting, launch


@triton.jit
def _source(o, t, pad, size, STRIDE: tl.constexpr, TRANSPOSED: tl.constexpr):
    """Input coordinate read by output coordinate o at tap t, and whether it exists."""
    if TRANSPOSED:
        u = o + pad - t
        i = u // STRIDE
        ok = (u >= 0) & (u - i * STRIDE == 0) & (i < size)
    else:
        i = o * STRIDE + t - pad
        ok = (i >= 0) & (i < size)
    return i, ok


@triton.jit
def _conv_kernel(x_ptr, w_ptr, sin_ptr, sout_ptr, y_ptr,
                 M, I, H, W, O, Ho, Wo, Hq, Wq, pad_y, pad_x,
                 sxn, sxc, sxh, sxw, swo, swi, swh, sww, syn, syc, syh, syw,
                 KH: tl.constexpr, KW: tl.constexpr, STRIDE: tl.constexpr, TRANSPOSED: tl.constexpr,
                 HAS_SIN: tl.constexpr, HAS_SOUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                 TSTEP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    # Transposed (stride S): output pixels of one phase (oy % S, ox % S) = program_id(2) only meet
    # the taps ty = (oy + pad) mod S + j*S, so each phase loops over ceil(KH/S) x ceil(KW/S) taps
    # instead of masking (S^2 - 1)/S^2 of all KH x KW. Rows index (n, qy, qx), oy = qy*S + phase_y.
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < O
    n = rows // (Hq * Wq)
    if TRANSPOSED:
        py = tl.program_id(2) // STRIDE
        px = tl.program_id(2) % STRIDE
        oy = ((rows // Wq) % Hq) * STRIDE + py
        ox = (rows % Wq) * STRIDE + px
        ty0 = (py + pad_y) % STRIDE
        tx0 = (px + pad_x) % STRIDE
    else:
        oy = (rows // Wq) % Hq
        ox = rows % Wq
        ty0 = 0
        tx0 = 0
    row_ok = (rows < M) & (oy < Ho) & (ox < Wo)
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for jy in tl.static_range((KH + TSTEP - 1) // TSTEP):
        ty = ty0 + jy * TSTEP
        iy, oky = _source(oy, ty, pad_y, H, STRIDE, TRANSPOSED)
        tyw = ty
        if TRANSPOSED:  # a tap past the kernel edge: its rows read nothing (the mask is built as a vector)
            oky = oky & ((oy * 0 + ty) < KH)
            tyw = tl.minimum(ty, KH - 1)  # and the weight address stays valid (times a zero tile)
        for jx in tl.static_range((KW + TSTEP - 1) // TSTEP):
            tx = tx0 + jx * TSTEP
            ix, okx = _source(ox, tx, pad_x, W, STRIDE, TRANSPOSED)
            txw = tx
            if TRANSPOSED:
                okx = okx & ((ox * 0 + tx) < KW)
                txw = tl.minimum(tx, KW - 1)
            ok = row_ok & oky & okx
            base = n.to(tl.int64) * sxn + iy.to(tl.int64) * sxh + ix.to(tl.int64) * sxw
            for i0 in range(0, I, BLOCK_K):
                ch = i0 + tl.arange(0, BLOCK_K)
                ch_ok = ch < I
                a = tl.load(x_ptr + base[:, None] + ch[None, :] * sxc, mask=ok[:, None] & ch_ok[None, :], other=0.0)
                if HAS_SIN:
                    s = tl.load(sin_ptr + n[:, None] * I + ch[None, :], mask=row_ok[:, None] & ch_ok[None, :], other=0.0)
                    a = (a.to(tl.float32) * s.to(tl.float32)).to(x_ptr.dtype.element_ty)
                b = tl.load(w_ptr + cols[None, :] * swo + ch[:, None] * swi + tyw * swh + txw * sww,
                            mask=ch_ok[:, None] & col_ok[None, :], other=0.0)
                b = b.to(x_ptr.dtype.element_ty)
                if UPCAST:
                    a, b = a.to(tl.float32), b.to(tl.float32)
                acc += tl.dot(a, b, input_precision=PRECISION)
    if HAS_SOUT:
        acc *= tl.load(sout_ptr + n[:, None] * O + cols[None, :], mask=row_ok[:, None] & col_ok[None, :],
                       other=0.0).to(tl.float32)
    out = (n.to(tl.int64) * syn + oy.to(tl.int64) * syh + ox.to(tl.int64) * syw)[:, None] + cols[None, :] * syc
    tl.store(y_ptr + out, acc.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])


@triton.jit
def _wgrad_kernel(x_ptr, g_ptr, sin_ptr, sout_ptr, dw_ptr,
                  M, I, H, W, O, Ho, Wo, pad_y, pad_x, chunk,
                  sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw,
                  KW: tl.constexpr, STRIDE: tl.constexpr, TRANSPOSED: tl.constexpr,
                  HAS_SIN: tl.constexpr, HAS_SOUT: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
                  BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_K: tl.constexpr):
    # grid: (O tiles * I tiles, taps, SPLIT); dw is fp32 [O, I, KH, KW] contiguous, zero-initialized
    n_i_tiles = tl.cdiv(I, BLOCK_I)
    o = (tl.program_id(0) // n_i_tiles) * BLOCK_O + tl.arange(0, BLOCK_O)
    c = (tl.program_id(0) % n_i_tiles) * BLOCK_I + tl.arange(0, BLOCK_I)
    ty = tl.program_id(1) // KW
    tx = tl.program_id(1) % KW
    o_ok = o < O
    c_ok = c < I
    acc = tl.zeros([BLOCK_O, BLOCK_I], dtype=tl.float32)
    start = tl.program_id(2) * chunk
    for q0 in range(start, start + chunk, BLOCK_K):
        q = q0 + tl.arange(0, BLOCK_K)
        q_ok = (q < M) & (q < start + chunk)
        if TRANSPOSED:  # q = input pixels (n, iy, ix): each meets exactly one output pixel per tap
            n = q // (H * W)
            iy = (q // W) % H
            ix = q % W
            oy = iy * STRIDE + ty - pad_y
            ox = ix * STRIDE + tx - pad_x
            g_ok = q_ok & (oy >= 0) & (oy < Ho) & (ox >= 0) & (ox < Wo)
            x_ok = q_ok
        else:  # q = output pixels (n, oy, ox), the input gathered at the tap
            n = q // (Ho * Wo)
            oy = (q // Wo) % Ho
            ox = q % Wo
            iy, oky = _source(oy, ty, pad_y, H, STRIDE, TRANSPOSED)
            ix, okx = _source(ox, tx, pad_x, W, STRIDE, TRANSPOSED)
            g_ok = q_ok
            x_ok = q_ok & oky & okx
        gbase = n.to(tl.int64) * sgn + oy.to(tl.int64) * sgh + ox.to(tl.int64) * sgw
        a = tl.load(g_ptr + gbase[None, :] + o[:, None] * sgc, mask=o_ok[:, None] & g_ok[None, :], other=0.0)
        if HAS_SOUT:
            s = tl.load(sout_ptr + n[None, :] * O + o[:, None], mask=o_ok[:, None] & q_ok[None, :], other=0.0)
            a = (a.to(tl.float32) * s.to(tl.float32)).to(g_ptr.dtype.element_ty)
        xbase = n.to(tl.int64) * sxn + iy.to(tl.int64) * sxh + ix.to(tl.int64) * sxw
        b = tl.load(x_ptr + xbase[:, None] + c[None, :] * sxc, mask=x_ok[:, None] & c_ok[None, :], other=0.0)
        if HAS_SIN:
            s = tl.load(sin_ptr + n[:, None] * I + c[None, :], mask=q_ok[:, None] & c_ok[None, :], other=0.0)
            b = (b.to(tl.float32) * s.to(tl.float32)).to(g_ptr.dtype.element_ty)
        b = b.to(g_ptr.dtype.element_ty)
        if UPCAST:
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc += tl.dot(a, b, input_precision=PRECISION)
    KH = tl.num_programs(1) // KW
    dst = dw_ptr + (o[:, None] * I + c[None, :]) * (KH * KW) + ty * KW + tx
    tl.atomic_add(dst, acc, mask=o_ok[:, None] & c_ok[None, :])


def _pow2(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, triton.next_power_of_2(max(int(v), 1))))


def _precision(dtype: torch.dtype) -> dict:
    """tl.dot settings. The CPU interpreter multiplies bf16 operands wrongly (Triton 3.9), so there
    they are widened to fp32 after rounding to bf16: the same products, summed in fp32 as on a GPU."""
    upcast = interpreting() and dtype == torch.bfloat16
    tf32 = dtype == torch.float32 and not interpreting() and torch.backends.cudnn.allow_tf32
    return dict(PRECISION="tf32" if tf32 else "ieee", UPCAST=upcast)


def conv(x, w, s_in, s_out, geom, out: torch.Tensor | None = None) -> torch.Tensor:
    """y[n, o] = s_out[n, o] * sum_i,t w[o, i, t] s_in[n, i] x[n, i, src] for w [O, I, KH, KW] (any strides);
    geom = (stride, pad_y, pad_x, transposed, Ho, Wo). y keeps x's memory format."""
    stride, pad_y, pad_x, transposed, Ho, Wo = geom
    N, I, H, W = x.shape
    O, _, KH, KW = w.shape
    if out is None:
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
            else torch.contiguous_format
        out = torch.empty((N, O, Ho, Wo), device=x.device, dtype=x.dtype, memory_format=fmt)
    phases = stride if transposed else 1  # one grid slice per output phase (see _conv_kernel)
    Hq, Wq = triton.cdiv(Ho, phases), triton.cdiv(Wo, phases)
    M = N * Hq * Wq
    if N * Ho * Wo == 0 or O == 0:
        return out
    bm, bn, bk = 64, _pow2(O, 16, 64), _pow2(I, 16, 32)
    grid = (triton.cdiv(M, bm), triton.cdiv(O, bn), phases * phases)
    launch(_conv_kernel, grid, x, w, s_in if s_in is not None else x, s_out if s_out is not None else x, out,
           M, I, H, W, O, Ho, Wo, Hq, Wq, pad_y, pad_x, *x.stride(), *w.stride(), *out.stride(),
           KH=KH, KW=KW, STRIDE=stride, TRANSPOSED=transposed, HAS_SIN=s_in is not None,
           HAS_SOUT=s_out is not None, **_precision(x.dtype), TSTEP=phases, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk)
    return out


def wgrad(x, g, s_in, s_out, geom, kernel: tuple[int, int]) -> torch.Tensor:
    """dw[o, i, t] = sum_n,q s_out g[n, o, q] * s_in x[n, i, src(q, t)], fp32 [O, I, KH, KW]."""
    stride, pad_y, pad_x, transposed, Ho, Wo = geom
    N, I, H, W = x.shape
    O = g.shape[1]
    KH, KW = kernel
    dw = torch.zeros((O, I, KH, KW), device=x.device, dtype=torch.float32)
    M = N * H * W if transposed else N * Ho * Wo  # the pixels the reduction runs over (see _wgrad_kernel)
    if M == 0:
        return dw
    bo, bi, bk = _pow2(O, 16, 64), _pow2(I, 16, 64), 64
    tiles = triton.cdiv(O, bo) * triton.cdiv(I, bi)
    split = max(1, min(triton.cdiv(M, bk * 4), 1024 // max(tiles * KH * KW, 1)))  # enough programs to fill a GPU
    chunk = triton.cdiv(triton.cdiv(M, split), bk) * bk
    split = triton.cdiv(M, chunk)
    launch(_wgrad_kernel, (tiles, KH * KW, split), x, g, s_in if s_in is not None else x,
           s_out if s_out is not None else x, dw, M, I, H, W, O, Ho, Wo, pad_y, pad_x, chunk,
           *x.stride(), *g.stride(), KW=KW, STRIDE=stride, TRANSPOSED=transposed, HAS_SIN=s_in is not None,
           HAS_SOUT=s_out is not None, **_precision(x.dtype), BLOCK_O=bo, BLOCK_I=bi, BLOCK_K=bk)
    return dw
