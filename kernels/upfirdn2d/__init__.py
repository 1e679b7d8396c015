"""upfirdn2d: upsample by zero insertion, pad (negative = crop), FIR-filter, downsample, in one op.

    from hifigan.kernels.upfirdn2d import upfirdn2d
    y = upfirdn2d(x, f, up=2, pad=(2, 1, 2, 1), gain=4, impl="auto")   # "reference" | "triton"

x [N, C, H, W], f [fh, fw] (a true convolution: flipped), pads (left, right, top, bottom) ->
y [N, C, (H*up + top + bottom - fh) // down + 1, (W*up + left + right - fw) // down + 1], times gain.
The Triton kernel covers forward, backward and double backward (the op is linear; see
triton_impl.py) for fp32, bf16 and fp16 with any strides; there is no CUDA impl. No gradient
flows to f on the Triton path (filters are constant buffers). impl=None uses the process default
(dispatch.set_default_impl); "auto" takes the kernel for CUDA tensors only.
"""
from __future__ import annotations

import operator

import torch

from .. import dispatch
from .reference import upfirdn2d as upfirdn2d_reference

__all__ = ["upfirdn2d", "upfirdn2d_reference"]


def _triton(*args):
    from .triton_impl import upfirdn2d as fn  # imports triton only on first use
    return fn(*args)


def _int(v, what: str) -> int:
    try:
        return operator.index(v)  # Python / NumPy ints, not floats (a fractional pad is a bug)
    except TypeError:
        raise ValueError(f"upfirdn2d: {what} must be an integer, got {v!r}") from None


def _pads(pad) -> tuple[int, int, int, int]:
    if not isinstance(pad, (tuple, list)):
        return (_int(pad, "pad"),) * 4
    if len(pad) != 4:
        raise ValueError(f"upfirdn2d: pad must be an int or 4 ints (left, right, top, bottom), got {pad!r}")
    return tuple(_int(p, "pad") for p in pad)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0, 0, 0),
              gain: float = 1.0, impl: str | None = None) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C, (H*up + pt + pb - fh) // down + 1, ...]; f [fh, fw] is applied as a
    true convolution (flipped) and multiplied by `gain` (use up**2 when upsampling to keep the mean)."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if f.ndim != 2:
        raise ValueError(f"upfirdn2d: f must be 2-D [fh, fw] (use setup_filter for 1-D taps), got shape {tuple(f.shape)}")
    if f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"upfirdn2d: f must have at least one tap, got shape {tuple(f.shape)}")
    up, down = _int(up, "up"), _int(down, "down")
    if up < 1 or down < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    pad = _pads(pad)
    _, _, H, W = x.shape
    oh = (H * up + pad[2] + pad[3] - f.shape[0]) // down + 1
    ow = (W * up + pad[0] + pad[1] - f.shape[1]) // down + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"upfirdn2d: output would be {oh} x {ow} for input {H} x {W}, filter {tuple(f.shape)}, "
                         f"up={up}, down={down}, pad={pad}; it must be at least 1 x 1")
    return dispatch.run("upfirdn2d", impl, (x,), {"triton": _triton}, upfirdn2d_reference,
                        x, f, up, down, pad, gain)
