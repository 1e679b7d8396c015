"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training",
arXiv:2006.10738) and the no-op policy: the cheap alternatives to ADA (hifigan/nn/augment.py).

DiffAugment applies its policy to every sample on every call (no probability; `p` exists for the
common interface and is 1). Its three ops, for images in [-1, 1]:
  color        brightness + U(-0.5, 0.5); saturation: deviations from the per-pixel channel mean times
               U(0, 2) (identity on one channel); contrast: deviations from the image mean times U(0.5, 1.5)
  translation  an integer shift of up to ratio * size (rounded) in x and y, zeros (mid-gray) shifted in
  cutout       a square of side ratio * size (rounded) set to 0, its center uniform over the image
All randomness is one rand(7) from the caller's Randomness per call, whatever the policy.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hifigan.schema import bounded

DIFFAUGMENT_OPS = ("color", "translation", "cutout")


class NoAugment(nn.Module):
    """The identity: images pass unchanged (p is 0 and unused)."""

    @dataclass(kw_only=True)
    class Config:
        pass

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.cfg = cfg if cfg is not None else self.Config()
        self.register_buffer("p", torch.zeros([]))

    def forward(self, images: torch.Tensor, rand) -> torch.Tensor:
        return images


class DiffAugment(nn.Module):
    """images [N, C, H, W] -> the policy's ops applied to every sample, in the policy's order."""

    @dataclass(kw_only=True)
    class Config:
        policy: str = "color,translation,cutout"          # comma-separated ops: color, translation, cutout
        translation_ratio: float = bounded(0.125, ge=0, le=1)  # largest shift, fraction of the image size
        cutout_ratio: float = bounded(0.5, ge=0, le=1)         # cutout square side, fraction of the image size

        def __post_init__(self):
            ops = [o.strip() for o in self.policy.split(",") if o.strip()]
            bad = [o for o in ops if o not in DIFFAUGMENT_OPS]
            if bad:
                raise ValueError(f"policy: unknown op {bad[0]!r} (choose a comma-separated list of "
                                 f"{', '.join(DIFFAUGMENT_OPS)})")

    def __init__(self, cfg: Config | None = None):
        super().__init__()
        self.cfg = cfg if cfg is not None else self.Config()
        self.ops = tuple(o.strip() for o in self.cfg.policy.split(",") if o.strip())
        self.register_buffer("p", torch.ones([]))

    def forward(self, images: torch.Tensor, rand) -> torch.Tensor:
        n, C, H, W = images.shape
        if rand.size != n:
            raise ValueError(f"DiffAugment: the Randomness is for {rand.size} samples but images has {n}")
        u = rand.rand(7).to(images.device, images.dtype)  # [n, 7]
        x = images
        for op in self.ops:
            if op == "color":
                x = color(x, u[:, 0:3])
            elif op == "translation":
                x = translation(x, u[:, 3:5], self.cfg.translation_ratio)
            else:
                x = cutout(x, u[:, 5:7], self.cfg.cutout_ratio)
        return x


def _col(t):
    return t[:, None, None, None]


def color(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Brightness, saturation, contrast from uniforms u [n, 3]."""
    x = x + _col(u[:, 0] - 0.5)
    mean = x.mean(1, keepdim=True)
    x = (x - mean) * _col(u[:, 1] * 2) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * _col(u[:, 2] + 0.5) + mean


def _shift(u: torch.Tensor, ratio: float, size: int) -> torch.Tensor:
    s = int(size * ratio + 0.5)
    return (u * (2 * s + 1)).floor().long().clamp(max=2 * s) - s  # uniform in [-s, s]


def translation(x: torch.Tensor, u: torch.Tensor, ratio: float) -> torch.Tensor:
    """out[i, j] = x[i + ty, j + tx], 0 outside; tx, ty from uniforms u [n, 2]."""
    n, C, H, W = x.shape
    tx, ty = _shift(u[:, 0], ratio, W), _shift(u[:, 1], ratio, H)
    sx = torch.arange(W, device=x.device)[None] + tx[:, None]  # [n, W]
    sy = torch.arange(H, device=x.device)[None] + ty[:, None]  # [n, H]
    ok = ((sx >= 0) & (sx < W))[:, None, :] & ((sy >= 0) & (sy < H))[:, :, None]  # [n, H, W]
    idx = (sy.clamp(0, H - 1)[:, :, None] * W + sx.clamp(0, W - 1)[:, None, :]).reshape(n, 1, H * W)
    out = x.reshape(n, C, H * W).gather(2, idx.expand(n, C, H * W)).reshape(n, C, H, W)
    return out * ok[:, None].to(x.dtype)


def cutout(x: torch.Tensor, u: torch.Tensor, ratio: float) -> torch.Tensor:
    """Zero a square of side round(ratio * size) centered at a uniform pixel (from u [n, 2])."""
    n, C, H, W = x.shape
    sw, sh = int(W * ratio + 0.5), int(H * ratio + 0.5)
    x0 = (u[:, 0] * (W + 1 - sw % 2)).floor().long() - sw // 2  # [n] left edge (may lie outside)
    y0 = (u[:, 1] * (H + 1 - sh % 2)).floor().long() - sh // 2
    jx, iy = torch.arange(W, device=x.device)[None], torch.arange(H, device=x.device)[None]
    in_x = (jx >= x0[:, None]) & (jx < x0[:, None] + sw)  # [n, W]
    in_y = (iy >= y0[:, None]) & (iy < y0[:, None] + sh)  # [n, H]
    keep = ~(in_x[:, None, :] & in_y[:, :, None])  # [n, H, W]
    return x * keep[:, None].to(x.dtype)
