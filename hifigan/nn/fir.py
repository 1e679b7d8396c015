"""FIR up/down-sampling: upsample by zero insertion, pad, convolve with a 2-D filter, keep every
`down`-th sample ("upfirdn2d").

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958) replaces nearest/bilinear resampling with the separable binomial filter
[1, 3, 3, 1] (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again", arXiv:1904.11486).
This is the plain PyTorch reference; the fused kernels come in kernels/modconv. Pads are
(left, right, top, bottom); negative pads crop.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def setup_filter(taps=(1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """1-D taps -> the separable 2-D filter outer(f, f), summing to 1 when `normalize`."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :] if f.ndim == 1 else f
    return f / f.sum() if normalize else f


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


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H*up, W*up], low-pass filtered; keeps a constant image constant."""
    p = f.shape[-1] - up
    return upfirdn2d(x, f, up=up, pad=((p + 1) // 2 + up - 1, p // 2, (p + 1) // 2 + up - 1, p // 2), gain=up ** 2)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H/down, W/down], low-pass filtered before decimation."""
    p = f.shape[-1] - down
    return upfirdn2d(x, f, down=down, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    groups: int = 1) -> torch.Tensor:
    """Same-size k x k convolution fused with 2x FIR resampling, as StyleGAN2's layers use it.

    up=2: a stride-2 transposed convolution (the zero-inserting upsample and the convolution in
    one op) followed by the filter, padded so the output is exactly 2H x 2W.
    down=2: the filter first (anti-aliasing), padded so that a stride-2 valid convolution gives H/2.
    w [O, I/groups, k, k]. Without resampling: a plain same-padded convolution. With up=2 it equals
    conv2d(upsample2d(x, f), w, padding=k//2) away from a one-pixel border (the fused form does not
    zero the upsampled image beyond its edge before convolving).
    """
    k = w.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=k // 2, groups=groups)
    fw = f.shape[-1]
    if up == 2:
        O, Ig = w.shape[:2]
        wt = w.reshape(groups, O // groups, Ig, k, k).transpose(1, 2).reshape(groups * Ig, O // groups, k, k)
        x = F.conv_transpose2d(x, wt.flip([2, 3]), stride=2, groups=groups)  # [.., 2H + k - 2, ..]
        p = fw - k + 1  # pads that bring 2H + k - 2 back to 2H with each input pixel centred on its 2x2 cell
        return upfirdn2d(x, f, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2), gain=4)
    if down == 2:
        p = (fw - 2) + (k - 1)
        x = upfirdn2d(x, f, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2))
        return F.conv2d(x, w, stride=2, groups=groups)
    raise ValueError(f"conv2d_resample supports up=2 or down=2, got up={up}, down={down}")
