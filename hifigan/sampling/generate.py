"""Generating: seeds or latents -> uint8 images, batched, with G in eval mode; standing statistics.

A seed fixes one image (hifigan.sampling.seeds). For a style-based generator that holds with
noise_mode "const" (fixed noise buffers) or "none"; "random" draws fresh noise per batch, so an
image then changes from run to run and with the batch it shares. Truncation (psi, cutoff) and noise
modes exist for style-based generators only (hifigan.sampling.hooks); asking another one for them
is a UserError.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.sampling.grid import to_uint8
from hifigan.sampling.hooks import check_style_options, hooks_for
from hifigan.sampling.seeds import resample_outside, seed_labels, seed_latents


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@torch.no_grad()
def standing_stats(G: nn.Module, batches: int, batch_size: int = 64, seed: int = 2**31 - 1, maps=None) -> None:
    """Recompute G's batch-norm running statistics as exact averages over `batches` fixed batches.

    G_ema's weights are an average that G never ran with, so the running statistics G collected do
    not describe it; BigGAN (Brock et al. 2019, arXiv:1809.11096) calls the fix "standing statistics".
    Deterministic: the latents come from a generator seeded with `seed`. A label-map generator
    (SPADE) runs on `maps` (label maps [n, k, H, W] from the data, at most `batches` of them) instead;
    without maps its statistics stay. Its running averages lag weights that keep changing, and a
    layer whose input hardly varies over the batch (SPADE's first block at a 1x1 start sees one
    pixel of the map) turns that lag into garbage once divided by sqrt(var + eps): measured on the
    tiny recipe, stroke IoU 0.38 with the lagging statistics and 0.94 with one batch of standing ones.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    labelmap = hooks_for(G).labelmap
    if not bns or batches <= 0 or (labelmap and not maps):
        return
    device = next(G.parameters()).device
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    was_training = G.training
    G.train()
    gen = torch.Generator().manual_seed(seed)
    if labelmap:
        for c in list(maps)[:batches]:
            z = torch.randn(len(c), G.z_dim, generator=gen).to(device) if G.use_vae else None
            G(z, c.to(device))
    for _ in range(0 if labelmap else batches):
        z = torch.randn(batch_size, G.z_dim, generator=gen).to(device)
        c = torch.randint(G.num_classes, (batch_size,), generator=gen).to(device) if G.num_classes else None
        G(z, c)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    G.train(was_training)


@torch.no_grad()
def run_batched(G: nn.Module, fn, inputs, batch_size: int, post=to_uint8) -> torch.Tensor:
    """post(fn(*slices)) over consecutive `batch_size` slices of `inputs` (None passes through), concatenated.

    G runs in eval mode and goes back to its previous mode afterwards; each row of the result depends
    only on its own row of the inputs (for a G without cross-sample layers in eval mode).
    """
    if batch_size < 1:
        raise UserError(f"--batch {batch_size}: give a positive number of images per forward pass")
    device = next(G.parameters()).device
    n = len(next(x for x in inputs if x is not None))
    was_training = G.training
    G.eval()
    try:
        out = [post(fn(*[None if x is None else x[i:i + batch_size].to(device) for x in inputs]))
               for i in range(0, n, batch_size)]
    finally:
        G.train(was_training)
    return torch.cat(out)


def generate_z(G: nn.Module, z: torch.Tensor, c: torch.Tensor | None = None, batch_size: int = 64,
               psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const") -> np.ndarray:
    """Images for latents z [N, z_dim] (+ labels c [N]) as uint8 [N, H, W, C]."""
    hooks = check_style_options(G, psi, cutoff, noise_mode)
    if hooks.z_truncation and psi != 1:  # z from elsewhere (walks): out-of-range entries redrawn, row i from seed i
        z = torch.stack([resample_outside(row, psi, lambda k, g=torch.Generator().manual_seed(i): torch.randn(k, generator=g))
                         for i, row in enumerate(z.cpu())])
        psi = 1.0
    if hooks.style_based:
        def fn(z, c):  # [n, C, H, W] in [-1, 1]
            return hooks.synthesis(G, hooks.mapping(G, z, c, psi, cutoff), noise_mode)
    else:
        def fn(z, c):
            return G(z, c)
    return run_batched(G, fn, [z, c], batch_size).numpy()


def generate(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64, psi: float = 1.0,
             cutoff: int | None = None, noise_mode: str = "const", seed_rng: str = "torch") -> np.ndarray:
    """Images for `seeds` as uint8 [N, H, W, C]; G runs in eval mode.

    psi, cutoff: truncation (style-based generators only; psi != 1 raises UserError for others).
    noise_mode: "const" or "none" keep a seed's image independent of its batch; "random" does not.
    seed_rng: "torch" (ours) or "numpy" (NVIDIA's generate.py), see hifigan.sampling.seeds.
    """
    hooks = check_style_options(G, psi, cutoff, noise_mode)
    z_trunc = hooks.z_truncation and psi != 1
    z = seed_latents(seeds, G.z_dim, seed_rng, threshold=psi if z_trunc else None)
    c = seed_labels(seeds, G.num_classes, cls)
    return generate_z(G, z, c, batch_size, 1.0 if z_trunc else psi, cutoff, noise_mode)
