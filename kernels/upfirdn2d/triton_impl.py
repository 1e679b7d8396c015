"""upfirdn2d in Triton: zero insertion, padding, FIR filtering and decimation in one pass, without
ever materializing the zero-inserted or padded image.

Forward (w = flip(f), pads (left, right, top, bottom), negative = crop):
    y[oy, ox] = gain * sum_{ty, tx} w[ty, tx] * U[oy*down + ty, ox*down + tx]
    U[r, c]   = x[(r - top) / up, (c - left) / up]  if both divisions are exact and in range, else 0
so every tap either reads one input pixel or contributes nothing; the kernel masks the latter.

Backward: the op is linear in x, y = A x, and dx = A^T dy. Writing the forward as
y[o] = gain * sum_i x[i] * w[i*up + top - o*down] (per axis) and matching it with the forward
formula of a second upfirdn2d gives A^T = upfirdn2d(., flip(f), up=down, down=up, gain=gain) with
    top' = fh - 1 - top,   bottom' = H*up - OH*down + top - up + 1    (same for left / right)
where bottom' is the smallest pad that brings the output back to exactly H rows (the forward's
floor division may have dropped samples; any pad giving H rows gives the same values). The
adjoint of A^T is A again, so the backward calls the same Function and double (and any higher)
backward runs through the kernel. There is no gradient with respect to f: the filters are
constant buffers (setup_filter), so backward returns None for it.

Tiling: one program computes a [BLOCK_C channels x BLOCK_P output pixels] tile of one sample n,
pixels flattened row-major. Small planes (4x4 .. 32x32, thousands of channels) get many channels
per program, large planes one channel and a long run of pixels, so every program does ~TILE
outputs. For channels-last tensors the channel axis is the contiguous one, so it gets the wide
side of the tile and the loads coalesce along it. Taps are constexpr-unrolled; each tap's weight
is a scalar load (the filter is 16 floats, always cached). Accumulation is fp32; the result is
rounded once, on store.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..dispatch import launch

TILE = 1024  # outputs per program: 8 fp32 accumulators per thread at 4 warps
MAX_GRID_Z = 65535  # CUDA's limit on the second and third grid dimensions


@triton.jit
def _tap(pos, size, UP: tl.constexpr):
    """Position `pos` in the zero-inserted, padded axis -> (input index, whether it holds a sample)."""
    if UP == 1:
        idx = pos
        ok = (pos >= 0) & (pos < size)
    else:
        idx = pos // UP  # truncation vs floor only differs for pos < 0, which is masked anyway
        ok = (pos >= 0) & (pos - idx * UP == 0) & (idx < size)
    return idx, ok


@triton.jit
def _upfirdn2d_kernel(x_ptr, f_ptr, y_ptr, C, H, W, OW, n_out,
                      sxn, sxc, sxh, sxw, syn, syc, syh, syw, pad_x, pad_y, gain,
                      UP: tl.constexpr, DOWN: tl.constexpr, FH: tl.constexpr, FW: tl.constexpr,
                      BIG: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr):
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    n = tl.program_id(2)
    if BIG:  # offsets past 2**31 elements
        p, c, n = p.to(tl.int64), c.to(tl.int64), n.to(tl.int64)
    oy = p // OW
    ox = p - oy * OW
    p_ok = p < n_out
    c_ok = c < C
    x_plane = x_ptr + n * sxn + c * sxc  # [BLOCK_C] pointers to each channel's plane
    row0 = oy * DOWN - pad_y  # the zero-inserted, padded image's row (column) under tap 0
    col0 = ox * DOWN - pad_x
    acc = tl.zeros([BLOCK_C, BLOCK_P], dtype=tl.float32)
    for ty in tl.static_range(FH):
        iy, y_ok = _tap(row0 + ty, H, UP)
        y_ok = y_ok & p_ok
        for tx in tl.static_range(FW):
            ix, x_ok = _tap(col0 + tx, W, UP)
            w = tl.load(f_ptr + (FH - 1 - ty) * FW + (FW - 1 - tx))  # flipped: a true convolution
            m = c_ok[:, None] & (y_ok & x_ok)[None, :]
            v = tl.load(x_plane[:, None] + (iy * sxh + ix * sxw)[None, :], mask=m, other=0.0)
            acc += v.to(tl.float32) * w
    acc = acc * gain
    y_off = n * syn + (c * syc)[:, None] + (oy * syh + ox * syw)[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=c_ok[:, None] & p_ok[None, :])


def out_shape(x: torch.Tensor, f: torch.Tensor, up: int, down: int, pad) -> tuple[int, int, int, int]:
    N, C, H, W = x.shape
    fh, fw = f.shape
    pl, pr, pt, pb = pad
    return N, C, (H * up + pt + pb - fh) // down + 1, (W * up + pl + pr - fw) // down + 1


def adjoint_pad(in_hw, out_hw, f_hw, up: int, down: int, pad) -> tuple[int, int, int, int]:
    """Pads of the transposed op (see the module docstring): maps an [OH, OW] gradient to [H, W]."""
    (H, W), (OH, OW), (fh, fw) = in_hw, out_hw, f_hw
    pl, _, pt, _ = pad
    return (fw - 1 - pl, W * up - OW * down + pl - up + 1, fh - 1 - pt, H * up - OH * down + pt - up + 1)


def _extent(t: torch.Tensor) -> int:
    return 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride()) if s > 0)


def _blocks(C: int, n_out: int, channels_last: bool) -> tuple[int, int]:
    if channels_last and C > 1:  # channels are contiguous: widen the tile along them
        bc = min(triton.next_power_of_2(C), 64)
        return bc, min(triton.next_power_of_2(n_out), max(TILE // bc, 1))
    bp = min(triton.next_power_of_2(n_out), TILE)
    return min(triton.next_power_of_2(C), max(TILE // bp, 1)), bp


def fwd(x: torch.Tensor, f: torch.Tensor, y: torch.Tensor, up: int, down: int, pad, gain: float) -> None:
    """Write upfirdn2d(x, f, ...) into y (any strides for both; y must have the output shape)."""
    if tuple(y.shape) != out_shape(x, f, up, down, pad):
        raise ValueError(f"upfirdn2d: output buffer has shape {tuple(y.shape)}, expected {out_shape(x, f, up, down, pad)}")
    N, C, H, W = x.shape
    _, _, OH, OW = y.shape
    if y.numel() == 0:
        return
    fk = f.detach().to(device=x.device, dtype=torch.float32).contiguous()
    big = max(_extent(x), _extent(y)) >= 2 ** 31 - TILE
    bc, bp = _blocks(C, OH * OW, x.stride(1) == 1)
    for n0 in range(0, N, MAX_GRID_Z):  # the sample index rides on grid axis 2
        xs, ys = x[n0:n0 + MAX_GRID_Z], y[n0:n0 + MAX_GRID_Z]
        grid = (triton.cdiv(OH * OW, bp), triton.cdiv(C, bc), xs.shape[0])
        launch(_upfirdn2d_kernel, grid, xs, fk, ys, C, H, W, OW, OH * OW, *xs.stride(), *ys.stride(),
               pad[0], pad[2], float(gain), UP=up, DOWN=down, FH=fk.shape[0], FW=fk.shape[1], BIG=big,
               BLOCK_C=bc, BLOCK_P=bp)


def _empty_out(x: torch.Tensor, shape) -> torch.Tensor:
    """Channels-last output for a channels-last x, contiguous otherwise."""
    cl = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.empty(shape, dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last if cl else torch.contiguous_format)


class UpFirDn2d(torch.autograd.Function):
    """Linear in x; backward = the same Function with the adjoint arguments. No gradient for f."""

    @staticmethod
    def forward(ctx, x, f, up, down, pad, gain):
        y = _empty_out(x, out_shape(x, f, up, down, pad))
        fwd(x, f, y, up, down, pad, gain)
        ctx.save_for_backward(f)
        ctx.spec = (tuple(x.shape[2:]), tuple(y.shape[2:]), up, down, tuple(pad), gain)
        return y

    @staticmethod
    def backward(ctx, dy):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None
        (f,) = ctx.saved_tensors
        in_hw, out_hw, up, down, pad, gain = ctx.spec
        q = adjoint_pad(in_hw, out_hw, tuple(f.shape), up, down, pad)
        dx = UpFirDn2d.apply(dy, f.flip([0, 1]), down, up, q, gain)
        return dx, None, None, None, None, None


def upfirdn2d(x, f, up, down, pad, gain):
    return UpFirDn2d.apply(x, f, up, down, tuple(pad), float(gain))
