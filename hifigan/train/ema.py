"""Exponential moving average of G's weights, parameterised by a half-life in images.

After `ema_kimg` thousand images an old weight's influence has halved: with global batch B the
per-step decay is beta = 0.5 ** (B / (1000 * ema_kimg)) (Karras et al. 2018, ProGAN; the
StyleGAN2-ADA convention). The optional ramp-up caps the half-life at nimg * rampup so early
averages do not drag in the random initialisation; BigGAN's start (Brock et al. 2019, arXiv:1809.11096,
appendix: ema_start) instead copies G until `start_kimg` thousand images, then averages. Buffers
(batch-norm statistics) are copied.
"""
from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, ema_kimg: float, nimg: int = 0, rampup: float | None = None,
             start_kimg: float = 0.0) -> float:
    """The decay of the update after `nimg` images (0: G_ema becomes a copy of G)."""
    if nimg < start_kimg * 1000:
        return 0.0
    ema_nimg = ema_kimg * 1000
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    if ema_nimg <= 0:
        return 0.0
    return 0.5 ** (batch_size / ema_nimg)


@torch.no_grad()
def ema_update(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """G_ema <- beta * G_ema + (1 - beta) * G for parameters; buffers copied from G."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)
