"""upfirdn2d reference: upsample by zero insertion, pad (or crop), convolve with a 2-D FIR filter,
keep every `down`-th sample, in plain PyTorch.

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958) resamples with the separable binomial filter [1, 3, 3, 1] instead of
nearest / bilinear interpolation, following Zhang 2019 ("Making Convolutional Networks
Shift-Invariant Again", arXiv:1904.11486): low-pass before decimating, and after zero insertion.

With U the zero-inserted, padded image (U[r, c] = x[(r - pad_top) / up, (c - pad_left) / up] where
both quotients are exact and in range, else 0) and w = flip(f) * gain:
    y[oy, ox] = sum_{ty < fh, tx < fw} w[ty, tx] * U[oy * down + ty, ox * down + tx]
Pads are (left, right, top, bottom); negative pads crop. This is the specification and the test
oracle; it materializes U, which the Triton kernel (triton_impl.py) never does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1, pad=(0, 0, 0, 0),
              gain: float = 1.0) -> torch.Tensor:
    """x [N, C, H, W] -> [N, C, (H*up + pt + pb - fh) // down + 1, ...]; f [fh, fw] is applied as a
    true convolution (flipped) and multiplied by `gain` (use up**2 when upsampling to keep the mean)."""
    N, C, H, W = x.shape
    if up > 1:
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1]).reshape(N, C, H * up, W * up)
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    w = (f * gain).flip([0, 1]).to(x.dtype)
    x = F.conv2d(x, w[None, None].expand(C, 1, *f.shape), groups=C)
    return x[:, :, ::down, ::down] if down > 1 else x
