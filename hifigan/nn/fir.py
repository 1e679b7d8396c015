"""FIR up/down-sampling: upsample by zero insertion, pad, convolve with a 2-D filter, keep every
`down`-th sample ("upfirdn2d").

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN",
arXiv:1912.04958) replaces nearest/bilinear resampling with the separable binomial filter
[1, 3, 3, 1] (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again", arXiv:1904.11486).
upfirdn2d itself (reference and Triton kernel) lives in kernels/upfirdn2d; the helpers here take
impl=None (the process default), "auto", "reference" or "triton". Pads are (left, right, top,
bottom); negative pads crop.
"""
from __future__ import annotations

import torch

# re-exported: the ops live in kernels/ (conv2d_resample beside the modulated convolution)
from hifigan.kernels.modconv import conv2d_resample
from hifigan.kernels.upfirdn2d import upfirdn2d

__all__ = ["conv2d_resample", "downsample2d", "setup_filter", "upfirdn2d", "upsample2d"]


def setup_filter(taps=(1, 3, 3, 1), normalize: bool = True) -> torch.Tensor:
    """1-D taps -> the separable 2-D filter outer(f, f), summing to 1 when `normalize`."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :] if f.ndim == 1 else f
    return f / f.sum() if normalize else f


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, impl: str | None = None) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H*up, W*up], low-pass filtered; keeps a constant image constant."""
    p = f.shape[-1] - up
    return upfirdn2d(x, f, up=up, pad=((p + 1) // 2 + up - 1, p // 2, (p + 1) // 2 + up - 1, p // 2), gain=up ** 2,
                     impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, impl: str | None = None) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H/down, W/down], low-pass filtered before decimation."""
    p = f.shape[-1] - down
    return upfirdn2d(x, f, down=down, pad=((p + 1) // 2, p // 2, (p + 1) // 2, p // 2), impl=impl)
