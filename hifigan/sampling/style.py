"""Style-based generators in w space: mapping seeds to ws, synthesizing ws, style-mixing grids.

Style mixing follows figure 3 of Karras et al. 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks" (arXiv:1812.04948): cell (r, k) takes the ws of row seed r (source A)
and replaces the styles listed in `styles` by those of column seed k (source B). Low indices are the
coarse styles (pose, shape), high ones the fine styles (colour, micro-structure). The default,
styles 0-3, is the coarse group: the 4x4 and 8x8 layers of a StyleGAN with two styles per
resolution. Truncation applies to each seed's ws before mixing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.sampling.generate import run_batched
from hifigan.sampling.grid import make_grid, save_npz, save_png
from hifigan.sampling.hooks import check_style_options, require_style
from hifigan.sampling.seeds import parse_ranges, parse_seeds, seed_labels, seed_latents

DEFAULT_MIX_STYLES = 4  # styles 0..3 (capped at num_ws): the coarse styles


def parse_styles(styles, num_ws: int) -> list[int]:
    """'0-3' or '0,2,4-5' (or a list of ints, or None for the default 0..3) -> sorted style indices."""
    if styles is None:
        return list(range(min(DEFAULT_MIX_STYLES, num_ws)))
    text = styles if isinstance(styles, str) else ",".join(map(str, styles))
    out = sorted(set(parse_ranges(text, "--mix-styles")))
    if out[-1] >= num_ws:
        raise UserError(f"--mix-styles {text!r}: this generator has {num_ws} styles; give indices in 0..{num_ws - 1}")
    return out


@dataclass(frozen=True)
class MixPlan:
    """A checked style-mixing request: row seeds (source A), column seeds (source B), mixed styles."""
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    styles: tuple[int, ...]

    @classmethod
    def parse(cls, G: nn.Module, rows: str | None, cols: str | None, styles: str | None) -> MixPlan | None:
        """The command-line strings -> a plan, or None when no mixing was asked for."""
        if rows is None and cols is None:
            if styles is not None:
                raise UserError("--mix-styles: give --mix-rows SEEDS and --mix-cols SEEDS too (the seeds to mix)")
            return None
        if rows is None or cols is None:
            missing = "--mix-cols" if cols is None else "--mix-rows"
            raise UserError(f"{missing} is missing: style mixing needs both --mix-rows SEEDS and --mix-cols SEEDS")
        hooks = require_style(G, "--mix-rows/--mix-cols")
        return cls(tuple(parse_seeds(rows, "--mix-rows")), tuple(parse_seeds(cols, "--mix-cols")),
                   tuple(parse_styles(styles, hooks.num_ws(G))))


def map_seeds(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64, psi: float = 1.0,
              cutoff: int | None = None, seed_rng: str = "torch") -> torch.Tensor:
    """ws [N, num_ws, w_dim] on the CPU for `seeds` (z and c exactly as `generate` draws them), truncated."""
    hooks = require_style(G, "w space")
    check_style_options(G, psi, cutoff)
    z = seed_latents(seeds, G.z_dim, seed_rng)
    c = seed_labels(seeds, G.num_classes, cls)
    return run_batched(G, lambda z, c: hooks.mapping(G, z, c, psi, cutoff), [z, c], batch_size,
                       post=lambda ws: ws.cpu())


def synthesize(G: nn.Module, ws: torch.Tensor, batch_size: int = 64, noise_mode: str = "const") -> np.ndarray:
    """Images for ws [N, num_ws, w_dim] as uint8 [N, H, W, C] (H, W: whatever synthesis returns)."""
    hooks = require_style(G, "w space")
    check_style_options(G, noise_mode=noise_mode)
    return run_batched(G, lambda ws: hooks.synthesis(G, ws, noise_mode), [ws], batch_size).numpy()


def style_mix(G: nn.Module, rows, cols, styles=None, cls: int | None = None, batch_size: int = 64,
              psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const", seed_rng: str = "torch"):
    """Style mixing: (row_images [R, H, W, C], col_images [K, H, W, C], cells uint8 [R, K, H, W, C]).

    Cell (r, k) is row seed r's ws with the styles in `styles` taken from column seed k's ws.
    The row and column images are the seeds' own images (as `generate` makes them).
    """
    hooks = require_style(G, "--mix-rows/--mix-cols")
    styles = parse_styles(styles, hooks.num_ws(G))
    ws_r = map_seeds(G, rows, cls, batch_size, psi, cutoff, seed_rng)  # [R, num_ws, w_dim]
    ws_c = map_seeds(G, cols, cls, batch_size, psi, cutoff, seed_rng)  # [K, num_ws, w_dim]
    n_r, n_c = len(ws_r), len(ws_c)
    mixed = ws_r[:, None].repeat(1, n_c, 1, 1)  # [R, K, num_ws, w_dim]
    mixed[:, :, styles] = ws_c[None][:, :, styles]
    imgs = synthesize(G, torch.cat([ws_r, ws_c, mixed.flatten(0, 1)]), batch_size, noise_mode)
    return imgs[:n_r], imgs[n_r:n_r + n_c], imgs[n_r + n_c:].reshape(n_r, n_c, *imgs.shape[1:])


def mix_grid(row_images: np.ndarray, col_images: np.ndarray, cells: np.ndarray, pad: int = 2) -> np.ndarray:
    """One image: a blank corner and the column seeds on top, the row seeds on the left, cells inside."""
    top = np.concatenate([np.zeros_like(col_images[:1]), col_images])  # [K + 1, H, W, C]
    body = np.concatenate([row_images[:, None], cells], axis=1)  # [R, K + 1, H, W, C]
    tiles = np.concatenate([top[None], body])  # [R + 1, K + 1, H, W, C]
    return make_grid(tiles.reshape(-1, *tiles.shape[2:]), cols=tiles.shape[1], pad=pad)


def write_mix(out_dir, plan: MixPlan, row_images: np.ndarray, col_images: np.ndarray, cells: np.ndarray) -> None:
    """mix_grid.png and mix.npz (key `images`: cells uint8 [rows, cols, H, W, C]; also the seeds,
    the styles and the seeds' own images), each written atomically."""
    out = Path(out_dir)
    save_png(out / "mix_grid.png", mix_grid(row_images, col_images, cells))
    save_npz(out / "mix.npz", images=cells, row_images=row_images, col_images=col_images,
             row_seeds=np.asarray(plan.rows, dtype=np.int64), col_seeds=np.asarray(plan.cols, dtype=np.int64),
             styles=np.asarray(plan.styles, dtype=np.int64))
