"""The Triton evaluation of modulated_conv2d: the style and demodulation scales go into the
kernels (fused.ScaledConv), the FIR filter of the resampling variants into the upfirdn2d op."""
from __future__ import annotations

from ..upfirdn2d import upfirdn2d
from . import fused
from .reference import down_pads, prepare, up_pads


def modulated_conv2d(x, weight, styles, demodulate, up, down, f, _fused):
    from . import triton_impl as lib
    N, I, H, W = x.shape
    k = weight.shape[-1]
    w, s, d = prepare(x, weight, styles, demodulate)
    if up == 2:  # transposed conv stride 2 with w as stored (StyleGAN2-ADA's orientation, see reference.py)
        geom = (2, 0, 0, True, 2 * H + k - 2, 2 * W + k - 2)
        y = fused.scaled_conv(lib, x, w, s, d, geom)
        return upfirdn2d(y, f, pad=up_pads(f.shape[-1], k), gain=4, impl="triton")
    if down == 2:
        x = upfirdn2d(x, f, pad=down_pads(f.shape[-1], k), impl="triton")
        H, W = x.shape[2:]
        return fused.scaled_conv(lib, x, w, s, d, (2, 0, 0, False, (H - k) // 2 + 1, (W - k) // 2 + 1))
    return fused.scaled_conv(lib, x, w, s, d, (1, k // 2, k // 2, False, H, W))

