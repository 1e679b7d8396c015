"""Laplacian pyramid (Burt & Adelson 1983), as LAPGAN uses it (Denton et al. 2015, "Deep Generative
Image Models using a Laplacian Pyramid of Adversarial Networks", arXiv:1506.05751, section 3).

With a fixed downsampling d and upsampling u, the Gaussian pyramid of an image I_0 is
I_{k+1} = d(I_k), and the band-pass (Laplacian) images are h_k = I_k - u(I_{k+1}); the coarsest
Gaussian image is kept as it is. Reconstruction runs back up: I_k = u(I_{k+1}) + h_k.

The inverse is exact by construction for any d and u: reconstruction applies the same u to the same
coarse image that decomposition subtracted, so the only error is float rounding in
(I - u(l)) + u(l) (none at all when the sums are exact, e.g. images on a grid of 1/128).

d: 2x2 average pooling (a box blur, then 2x decimation). u: bilinear 2x upsampling (half-pixel
centres, edges clamped), smoother than nearest so a coarse image conditions a finer level with no
block edges. Both are linear, deterministic and fixed (no parameters).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def downsample(x: torch.Tensor) -> torch.Tensor:
    """d: [N, C, H, W] -> [N, C, H/2, W/2], the mean of each 2x2 block."""
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    """u: [N, C, H, W] -> [N, C, 2H, 2W], bilinear."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def check_levels(size: int, levels: int, what: str = "resolution") -> None:
    """ValueError (one line) unless `size` halves cleanly `levels - 1` times."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1 (1 = no pyramid), got {levels}")
    step = 2 ** (levels - 1)
    if size < step or size % step:
        raise ValueError(f"{what} {size} is not divisible by 2**(levels-1) = {step}: a {levels}-level pyramid "
                         f"halves it {levels - 1} times; change {what} or levels")


def gaussian(img: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[I_0 = img, I_1 = d(I_0), ..., I_{levels-1}]: finest first."""
    for side in img.shape[-2:]:
        check_levels(side, levels, "image side")
    out = [img]
    for _ in range(levels - 1):
        out.append(downsample(out[-1]))
    return out


def decompose(img: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """img [N, C, H, W] -> [h_0 (finest, H x W), ..., h_{levels-2}, I_{levels-1} (coarsest)],
    h_k = I_k - u(I_{k+1}). levels = 1 gives [img]."""
    g = gaussian(img, levels)
    return [fine - upsample(coarse) for fine, coarse in zip(g[:-1], g[1:])] + [g[-1]]


def reconstruct(parts: list[torch.Tensor]) -> torch.Tensor:
    """The inverse of `decompose`: [h_0, ..., h_{L-2}, I_{L-1}] -> I_0."""
    img = parts[-1]
    for h in reversed(parts[:-1]):
        img = upsample(img) + h
    return img


def coarse_to_fine(img: torch.Tensor, levels: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """What each level of a LAPGAN learns from a real image, coarsest first: [(I_{L-1}, None),
    (h_{L-2}, u(I_{L-1})), ..., (h_0, u(I_1))]: the coarsest image, then each band-pass image with the
    upsampled coarser image it is conditioned on (the same terms `decompose` computes)."""
    g = gaussian(img, levels)[::-1]  # coarsest first
    out = [(g[0], None)]
    for coarse, fine in zip(g[:-1], g[1:]):
        low = upsample(coarse)
        out.append((fine - low, low))
    return out
