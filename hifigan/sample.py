"""Sampling from a generator: per-seed latents, standing batch-norm statistics, grids, PNG/NPZ output.

A seed fixes one image: z for seed s is drawn alone from `torch.Generator().manual_seed(s)`, and
G runs in eval mode, so an image never depends on which other seeds share its batch.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError


def parse_seeds(text: str) -> list[int]:
    """'0-63' or '1,5,9-11' -> list of ints."""
    seeds = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if hi else int(lo)
            if lo < 0 or hi < lo:
                raise ValueError
            seeds.extend(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected non-negative numbers and ranges like 0-63 or 1,5,9-11") from None
    if not seeds:
        raise UserError(f"--seeds {text!r}: no seeds given")
    return seeds


def seed_latents(seeds, z_dim: int) -> torch.Tensor:
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


def seed_labels(seeds, num_classes: int, cls: int | None = None):
    """Class labels for conditional generators: `cls` for all, else seed % num_classes (rows = classes)."""
    if not num_classes:
        if cls is not None:
            raise UserError("--class was given but this generator is unconditional (num_classes = 0)")
        return None
    if cls is not None and not 0 <= cls < num_classes:
        raise UserError(f"--class {cls}: this generator knows classes 0..{num_classes - 1}")
    return torch.tensor([cls if cls is not None else int(s) % num_classes for s in seeds])


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@torch.no_grad()
def standing_stats(G: nn.Module, batches: int, batch_size: int = 64, seed: int = 2**31 - 1) -> None:
    """Recompute G's batch-norm running statistics as exact averages over `batches` fixed batches.

    G_ema's weights are an average that G never ran with, so the running statistics G collected do
    not describe it; BigGAN (Brock et al. 2019, arXiv:1809.11096) calls the fix "standing statistics".
    Deterministic: the latents come from a generator seeded with `seed`.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return
    device = next(G.parameters()).device
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches
    was_training = G.training
    G.train()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(batches):
        z = torch.randn(batch_size, G.z_dim, generator=gen).to(device)
        c = torch.randint(G.num_classes, (batch_size,), generator=gen).to(device) if G.num_classes else None
        G(z, c)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    G.train(was_training)


@torch.no_grad()
def generate(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64) -> np.ndarray:
    """Images for `seeds` as uint8 [N, H, W, C]; G runs in eval mode."""
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    z_all = seed_latents(seeds, G.z_dim)
    c_all = seed_labels(seeds, G.num_classes, cls)
    out = []
    for i in range(0, len(seeds), batch_size):
        z = z_all[i:i + batch_size].to(device)
        c = None if c_all is None else c_all[i:i + batch_size].to(device)
        img = G(z, c).float()  # [n, C, H, W] in [-1, 1]
        out.append((img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu())
    G.train(was_training)
    return torch.cat(out).numpy()


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


def atomic_write(path: Path, write) -> None:
    """Write through `write(tmp_path)` to a temporary name beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def write_samples(out_dir, seeds, images: np.ndarray, cols: int | None = None) -> None:
    """One PNG per seed, grid.png and samples.npz (key `images`, uint8 [N, H, W, C]), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s, img in zip(seeds, images):
        save_png(out / f"seed{s:04d}.png", img)
    save_png(out / "grid.png", make_grid(images, cols))

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, images=images, seeds=np.asarray(seeds, dtype=np.int64))
    atomic_write(out / "samples.npz", write_npz)


def generate_from_checkpoint(path, seeds: str, out_dir, cls: int | None = None, batch_size: int = 64,
                             device: str | None = None) -> np.ndarray:
    """launch/generate.py: needs nothing but the checkpoint (G_ema if present, else G)."""
    from hifigan.train import checkpoint
    ckpt = checkpoint.resolve(path)
    if ckpt.is_dir():
        files = [ckpt / "G_ema.safetensors", ckpt / "G.safetensors"]
        file = next((f for f in files if f.is_file()), None)
        if file is None:
            raise UserError(f"{ckpt}: no G_ema.safetensors or G.safetensors in this checkpoint")
    else:
        file = ckpt
    G, md = checkpoint.build_net(file)
    if md.get("kind") != "generator":
        raise UserError(f"{file}: holds a {md.get('kind')}, not a generator; give G_ema.safetensors or a run dir")
    G = G.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval().requires_grad_(False)
    seed_list = parse_seeds(seeds)
    images = generate(G, seed_list, cls, batch_size)
    write_samples(out_dir, seed_list, images, G.num_classes or None)
    return images
