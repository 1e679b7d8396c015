"""Progressive growing (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation", arXiv:1710.10196, sections 2 and A.1).

Training starts at `start_resolution` and doubles it: each new resolution first fades in over
`fade_kimg` thousand real images (alpha ramps linearly 0 -> 1; G blends the new toRGB output with
the upsampled previous one, D the new fromRGB path with the downsampled one, and the real
images are blended the same way so D never sees a sharper real than fake) and then trains
`stable_kimg` at alpha = 1. The last resolution trains until the run ends. The stage is a pure
function of the number of images shown (nimg), so a resumed run lands on the same stage and alpha
to the image. Global batch size and learning rate may change per resolution (smaller batches at
high resolutions fit memory); Adam's moments are reset when a fade-in or a stable phase starts,
as the ProGAN reference does, because the loss landscape changes under them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Stage:
    resolution: int   # current training resolution
    alpha: float      # weight of the newest resolution's layers (1 = stable)
    index: int        # 0, 1, 2, ...: increments at every fade-in start and every stable start


def stage_at(nimg: int, start: int, final: int, stable_kimg: float, fade_kimg: float) -> Stage:
    """The stage after `nimg` real images (see the module docstring)."""
    k, res, index = nimg / 1000.0, start, 0
    if k < stable_kimg or res >= final:
        return Stage(res, 1.0, 0)
    k -= stable_kimg
    while True:
        res, index = res * 2, index + 1
        if k < fade_kimg and fade_kimg > 0:
            return Stage(res, k / fade_kimg, index)
        k -= fade_kimg
        index += 1
        if k < stable_kimg or res >= final:
            return Stage(res, 1.0, index)
        k -= stable_kimg


def per_resolution(table: dict, resolution: int, default):
    """A value from a {resolution: value} table (keys as written in YAML), else `default`."""
    for key, value in (table or {}).items():
        if int(key) == resolution:
            return value
    return default


def fade_reals(img: torch.Tensor, alpha: float) -> torch.Tensor:
    """Reals during a fade-in: lerp(upsample(downsample(img)), img, alpha), matching what G can
    produce at that alpha (2x2 box average, nearest upsampling)."""
    if alpha >= 1.0:
        return img
    low = F.interpolate(F.avg_pool2d(img, 2), scale_factor=2, mode="nearest")
    return torch.lerp(low, img, alpha)


def downsample_to(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Box-filter [N, C, H, W] down to resolution x resolution (H a power-of-two multiple of it)."""
    factor = img.shape[-1] // resolution
    return F.avg_pool2d(img, factor) if factor > 1 else img
