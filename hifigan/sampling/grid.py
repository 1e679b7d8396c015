"""Images out: uint8 conversion, grids (a conditional model's with one row per class), PNG and NPZ
files, each written atomically (hifigan.io)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hifigan.io import atomic_write


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """img [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] on the CPU."""
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


def make_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, H, W, C] -> one uint8 [rows*(H+pad)+pad, cols*(W+pad)+pad, C] image."""
    n, h, w, c = images.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    grid = np.zeros((rows * (h + pad) + pad, cols * (w + pad) + pad, c), dtype=np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
    return grid


def class_rows(images: np.ndarray, labels, num_classes: int) -> tuple[np.ndarray, int]:
    """(images reordered so that row r of the grid holds class r's images in their order, padded with
    black cells, and the number of columns): the layout of a conditional model's grid.png."""
    labels = np.asarray(labels)
    per_class = [np.flatnonzero(labels == k) for k in range(num_classes)]
    cols = max(1, max(len(idx) for idx in per_class))
    out = np.zeros((num_classes * cols, *images.shape[1:]), dtype=images.dtype)
    for k, idx in enumerate(per_class):
        out[k * cols:k * cols + len(idx)] = images[idx]
    return out, cols


def save_png(path, image: np.ndarray) -> None:
    """uint8 [H, W, C] (C = 1 or 3) -> a PNG file, written atomically."""
    from PIL import Image
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def save_npz(path, **arrays) -> None:
    """numpy arrays -> an (uncompressed) .npz file, written atomically."""
    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(Path(path), write)


def write_samples(out_dir, seeds, images: np.ndarray, cols: int | None = None, grid: np.ndarray | None = None) -> None:
    """One PNG per seed, grid.png (of `grid`, default the images in order) and samples.npz (key `images`,
    uint8 [N, H, W, C]), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s, img in zip(seeds, images):
        save_png(out / f"seed{s:04d}.png", img)
    save_png(out / "grid.png", make_grid(images if grid is None else grid, cols))
    save_npz(out / "samples.npz", images=images, seeds=np.asarray(seeds, dtype=np.int64))
