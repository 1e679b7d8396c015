"""Edits of embedded images (Image2StyleGAN, Abdal et al. 2019, arXiv:1904.03189, section 6;
Image2StyleGAN++, Abdal et al. 2020, arXiv:1911.11544, section 5), on ws [num_ws, w_dim] from
`project` (W+; low indices are the coarse layers: pose, shape; high ones the fine: colour, texture).

- crossover(ws_a, ws_b, k): the coarse layers [0, k) from A, the fine layers [k, num_ws) from B.
- style_transfer(ws_content, ws_style, k): the content image's ws in layers [0, k), the style image's
  in [k, num_ws) (Image2StyleGAN keeps the first 9 of 18 layers of the content image).
- local_edit: masked blending of two embeddings' images by optimization: the result is projected onto
  A's image outside the mask and B's inside, starting from A's ws (Image2StyleGAN++'s local edits:
  each region's loss sees one source, so G fills in a seamless transition).
"""
from __future__ import annotations

import torch
from torch import nn

from hifigan.errors import UserError


def _splice(ws_a: torch.Tensor, ws_b: torch.Tensor, k: int, flag: str = "--layer") -> torch.Tensor:
    if ws_a.shape != ws_b.shape or ws_a.ndim not in (2, 3):
        raise UserError(f"the two embeddings have different shapes ({list(ws_a.shape)} and {list(ws_b.shape)}); "
                        f"give projections of the same generator")
    num_ws = ws_a.shape[-2]
    if not 0 <= int(k) <= num_ws:
        raise UserError(f"{flag} {k}: this generator has {num_ws} styles; give 0..{num_ws}")
    out = ws_b.clone()
    out[..., :int(k), :] = ws_a[..., :int(k), :]
    return out


def crossover(ws_a: torch.Tensor, ws_b: torch.Tensor, k: int) -> torch.Tensor:
    """ws [num_ws, w_dim] (or [N, num_ws, w_dim]): rows < k from ws_a (coarse), rows >= k from ws_b (fine)."""
    return _splice(ws_a, ws_b, k)


def style_transfer(ws_content: torch.Tensor, ws_style: torch.Tensor, k: int) -> torch.Tensor:
    """ws: the content's rows < k (layout, shape), the style's rows >= k (colour, texture)."""
    return _splice(ws_content, ws_style, k)


def local_edit(G: nn.Module, ws_a: torch.Tensor, ws_b: torch.Tensor, mask: torch.Tensor, cfg,
               on_step=None):
    """Blend B's image into A's where mask [1, 1, H, W] is 1, by optimizing W+ from ws_a: the target is
    A's image outside the mask and B's inside (both synthesized). Returns a Projection."""
    from hifigan.project.image2stylegan import project, style_hooks
    hooks = style_hooks(G)
    device = next(G.parameters()).device
    with torch.no_grad():
        imgs = hooks.synthesis(G, torch.stack([ws_a, ws_b]).to(device).float(), "const")  # [2, C, H, W]
    m = mask.to(device).float()
    target = imgs[:1] * (1 - m) + imgs[1:] * m
    return project(G, target, cfg, perceptual=None, on_step=on_step, init_ws=ws_a)
