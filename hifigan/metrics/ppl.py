"""Perceptual path length (Karras et al. 2019, "A Style-Based Generator Architecture for Generative
Adversarial Networks", arXiv:1812.04948, section 3; the ppl2_wend protocol of StyleGAN2, arXiv:1912.04958):
    PPL = E[ d(G(lerp(w0, w1, t)), G(lerp(w0, w1, t + eps))) / eps^2 ],
d the LPIPS distance (hifigan/metrics/vgg.py), eps = 1e-4, w = mapping(z) for z0, z1 ~ N(0, I) (the
same class for both ends of a conditional G), t = 0 ("end": path endpoints; "full": t ~ U(0, 1)),
lerp in w (slerp in z for space z). Images larger than 256 are area-downsampled to 256 first, noise
is the generator's constant noise. Samples outside the 1st..99th percentiles are dropped before the
mean (numpy's "lower"/"higher" percentile interpolation, as the reference).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hifigan.sampling.hooks import require_style


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    omega = (a * b).sum(-1, keepdim=True).clamp(-1, 1).acos()
    return F.normalize(a * torch.cos(t * omega) + F.normalize(b - a * (a * b).sum(-1, keepdim=True), dim=-1)
                       * torch.sin(t * omega), dim=-1)


def draws(n: int, z_dim: int, num_classes: int, sampling: str, seed: int):
    """(z0 [n, z], z1 [n, z], c [n] class ids or None, t [n, 1]) for the n samples, fixed by seed
    (drawn in one piece, so any split over ranks sees the same samples)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, z_dim, generator=g)
    c = torch.randint(num_classes, (n,), generator=g) if num_classes else None
    t = torch.rand(n, 1, generator=g) * (1.0 if sampling == "full" else 0.0)
    return z[:, 0], z[:, 1], c, t


@torch.no_grad()
def path_lengths(G, lpips, z0, z1, c, t, space: str = "w", epsilon: float = 1e-4) -> torch.Tensor:
    """Per-sample scaled LPIPS distances [n] for one batch (module docstring)."""
    hooks = require_style(G, "ppl")
    cc = c  # class ids, as the style-based generators' mapping takes them
    if space == "z":
        za, zb = slerp(z0, z1, t), slerp(z0, z1, t + epsilon)
        wa, wb = hooks.mapping(G, za, cc, 1.0, None), hooks.mapping(G, zb, cc, 1.0, None)
    else:
        w0, w1 = hooks.mapping(G, z0, cc, 1.0, None), hooks.mapping(G, z1, cc, 1.0, None)
        tt = t[:, :, None]
        wa, wb = torch.lerp(w0, w1, tt), torch.lerp(w0, w1, tt + epsilon)
    img = hooks.synthesis(G, torch.cat([wa, wb]), "const").float()
    if img.shape[2] > 256:
        img = F.adaptive_avg_pool2d(img, 256)
    a, b = img.chunk(2)
    return lpips(a, b).double() / epsilon ** 2


def filtered_mean(dist: np.ndarray) -> float:
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(dist[(dist >= lo) & (dist <= hi)].mean())
