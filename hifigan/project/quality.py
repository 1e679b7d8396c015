"""How close a reconstruction is to its target, on uint8 images [H, W, C] (peak 255).

- PSNR: 10 log10(255^2 / MSE), over the known pixels when a mask is given.
- SSIM (Wang et al. 2004, "Image Quality Assessment: From Error Visibility to Structural Similarity",
  IEEE TIP 13(4)): 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, dynamic range 255, the mean of
  the SSIM map over the valid (unpadded) positions and the channels.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MAX_PSNR = 100.0  # identical images: reported as this instead of infinity (JSON has no inf)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """dB between uint8 images [H, W, C]; mask [H, W] (nonzero = counted) restricts it to the known pixels."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        keep = np.broadcast_to(mask.reshape(*mask.shape[:2], 1) > 0, d.shape)
        d = d[keep]
    mse = float(d.mean()) if d.size else 0.0
    return MAX_PSNR if mse <= 0 else min(MAX_PSNR, 10 * math.log10(255.0 ** 2 / mse))


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # [size, size]


def ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of two uint8 images [H, W, C] (window shrunk to the image for images under 11 pixels)."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]  # [C, 1, H, W]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    size = min(size, x.shape[-1], x.shape[-2])
    w = _gaussian(size, sigma)[None, None]
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = F.conv2d(x, w), F.conv2d(y, w)
    sxx = F.conv2d(x * x, w) - mx ** 2
    syy = F.conv2d(y * y, w) - my ** 2
    sxy = F.conv2d(x * y, w) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())
