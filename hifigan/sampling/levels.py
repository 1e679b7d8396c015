"""Every level of a pyramid generator (LAPGAN: Denton et al. 2015, "Deep Generative Image Models using
a Laplacian Pyramid of Adversarial Networks", arXiv:1506.05751, figure 3): for each seed, the image at
each level from the coarsest to the output, each enlarged to the output size with nearest neighbours
(its pixels stay visible) and laid side by side."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hifigan.errors import UserError
from hifigan.sampling.generate import run_batched
from hifigan.sampling.grid import make_grid, save_npz, save_png, to_uint8
from hifigan.sampling.hooks import SamplingHooks, arch_name, hooks_for
from hifigan.sampling.seeds import seed_labels, seed_latents


def check_levels_option(G: nn.Module) -> SamplingHooks:
    """G's hooks if it samples through pyramid levels, else a one-line UserError."""
    hooks = hooks_for(G)
    if hooks.levels is None:
        raise UserError(f"--levels: this generator ({arch_name(G)!r}) has no pyramid levels; only LAPGAN "
                        f"generators have them; drop the option")
    return hooks


def pyramid_levels(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64,
                   seed_rng: str = "torch") -> np.ndarray:
    """uint8 [N, levels, H, W, C]: seed i's image at every level, coarsest first, at G's output size.
    The last level is the seed's image as `generate` makes it."""
    hooks = check_levels_option(G)
    z = seed_latents(seeds, G.z_dim, seed_rng)
    c = seed_labels(seeds, G.num_classes, cls)
    side = G.img_shape[-1]

    def fn(z_, c_):  # [n, levels, C, H, W]
        return torch.stack([F.interpolate(img, size=(side, side), mode="nearest") for img in hooks.levels(G, z_, c_)], 1)

    def post(x):  # [n, levels, C, H, W] -> uint8 [n, levels, H, W, C]
        return to_uint8(x.flatten(0, 1)).view(*x.shape[:2], side, side, x.shape[2])
    return run_batched(G, fn, [z, c], batch_size, post=post).numpy()


def write_levels(out_dir, seeds, tiles: np.ndarray) -> None:
    """OUT/levels/seed<s>.png (one row: the levels side by side), OUT/levels.png (row = seed, column =
    level) and OUT/levels.npz (key `images`, uint8 [N, levels, H, W, C]), each written atomically."""
    out = Path(out_dir)
    (out / "levels").mkdir(parents=True, exist_ok=True)
    for s, row in zip(seeds, tiles):
        save_png(out / "levels" / f"seed{s:04d}.png", make_grid(row, len(row)))
    save_png(out / "levels.png", make_grid(tiles.reshape(-1, *tiles.shape[2:]), tiles.shape[1]))
    save_npz(out / "levels.npz", images=tiles, seeds=np.asarray(seeds, dtype=np.int64))
