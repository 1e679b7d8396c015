"""Sampling from a generator: per-seed latents, standing batch-norm statistics, truncation, grids,
PNG/NPZ output.

A seed fixes one image: z for seed s is drawn alone from `torch.Generator().manual_seed(s)`, and
G runs in eval mode, so an image never depends on which other seeds share its batch. For a
style-based generator (one with `mapping` and `synthesis`, StyleGAN: Karras et al. 2019,
"A Style-Based Generator Architecture for Generative Adversarial Networks", arXiv:1812.04948) that
holds with noise_mode "const" (fixed noise buffers) or "none"; "random" draws fresh noise per batch,
so an image then changes from run to run and with the batch it shares.

Truncation (the truncation trick of StyleGAN, section 3.1 above): ws = w_avg + psi * (ws - w_avg)
on the styles [0, cutoff); psi = 1 is off, psi = 0 gives the average image for every seed.
Style mixing and interpolation videos live in `hifigan.sample_style`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError


def parse_ranges(text: str, flag: str) -> list[int]:
    """'0-63' or '1,5,9-11' -> list of ints; errors name the command-line `flag`."""
    values = []
    try:
        for part in str(text).split(","):
            lo, _, hi = part.strip().partition("-")
            lo, hi = int(lo), int(hi) if hi else int(lo)
            if lo < 0 or hi < lo:
                raise ValueError
            values.extend(range(lo, hi + 1))
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected non-negative numbers and ranges like 0-63 or 1,5,9-11") from None
    if not values:
        raise UserError(f"{flag} {text!r}: no values given")
    return values


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """'0-63' or '1,5,9-11' -> list of ints."""
    return parse_ranges(text, flag)


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


NOISE_MODES = ("const", "random", "none")


def is_style_based(G: nn.Module) -> bool:
    """StyleGAN-family generators expose `mapping` (z, c -> ws) and `synthesis` (ws -> img)."""
    return hasattr(G, "mapping") and hasattr(G, "synthesis")


def arch_name(G: nn.Module) -> str:
    return getattr(G, "registry_name", type(G).__name__)


def check_style_options(G: nn.Module, psi: float = 1.0, cutoff: int | None = None,
                        noise_mode: str = "const") -> None:
    """Truncation and noise options are for style-based generators; check them before any work."""
    if noise_mode not in NOISE_MODES:
        raise UserError(f"--noise-mode {noise_mode!r}: use one of {', '.join(NOISE_MODES)}")
    if not is_style_based(G):
        given = [f for f, on in [(f"--trunc {psi:g}", psi != 1), (f"--trunc-cutoff {cutoff}", cutoff is not None),
                                 (f"--noise-mode {noise_mode}", noise_mode != "const")] if on]
        if given:
            raise UserError(f"{given[0]}: needs a style-based generator (StyleGAN), but this one is "
                            f"{arch_name(G)!r} (no mapping network); drop the option")
        return
    if cutoff is not None and not 0 <= cutoff <= G.num_ws:
        raise UserError(f"--trunc-cutoff {cutoff}: this generator has {G.num_ws} styles; give 0..{G.num_ws}")


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """img [N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C] on the CPU."""
    return (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu()


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
    check_style_options(G, psi, cutoff, noise_mode)
    if is_style_based(G):
        def fn(z, c):
            return G(z, c, psi=psi, cutoff=cutoff, noise_mode=noise_mode)  # [n, C, H, W] in [-1, 1]
    else:
        def fn(z, c):
            return G(z, c)
    return run_batched(G, fn, [z, c], batch_size).numpy()


def generate(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64, psi: float = 1.0,
             cutoff: int | None = None, noise_mode: str = "const") -> np.ndarray:
    """Images for `seeds` as uint8 [N, H, W, C]; G runs in eval mode.

    psi, cutoff: truncation (style-based generators only; psi != 1 raises UserError for others).
    noise_mode: "const" or "none" keep a seed's image independent of its batch; "random" does not.
    """
    z = seed_latents(seeds, G.z_dim)
    c = seed_labels(seeds, G.num_classes, cls)
    return generate_z(G, z, c, batch_size, psi, cutoff, noise_mode)


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


def check_code_options(G: nn.Module, span: float, steps: int) -> None:
    if not getattr(G, "code_cat", 0) and not getattr(G, "code_cont", 0):
        raise UserError("--codes: this generator has no latent codes (G.code_cat and G.code_cont are 0); "
                        "only InfoGAN generators have them")
    if steps < 2 or not span > 0:
        raise UserError(f"--code-steps {steps} / --code-span {span}: need at least 2 steps and a positive span")


def code_traversals(G: nn.Module, seeds, span: float = 2.0, steps: int = 9, cls: int | None = None,
                    batch_size: int = 64) -> dict[str, np.ndarray]:
    """InfoGAN latent traversals (generators with code_cat / code_cont): {name: uint8 [rows, cols, H, W, C]}.

    "cat": row = seed (its noise and continuous codes), column = category 0..code_cat-1.
    "cont<i>": row = seed (its noise, category and other codes), column = code i at `steps` values
    evenly from -span to span (the prior is [-1, 1]; the paper's figure 2 goes to 2).
    """
    check_code_options(G, span, steps)
    cat, cont = G.code_cat, G.code_cont
    from hifigan.nn.codes import codes_from_normal
    z = seed_latents(seeds, G.z_dim)  # [S, z_dim]
    c = seed_labels(seeds, G.num_classes, cls)
    category, values = codes_from_normal(z, cat, cont)
    out = {}

    def run(reps: int, category_, values_):
        zz = z.repeat_interleave(reps, 0)
        cc = None if c is None else c.repeat_interleave(reps, 0)
        imgs = run_batched(G, lambda z_, c_, k_, v_: G(z_, c_, codes=(k_, v_)), [zz, cc, category_, values_],
                           batch_size).numpy()
        return imgs.reshape(len(seeds), reps, *imgs.shape[1:])
    if cat:
        out["cat"] = run(cat, torch.arange(cat).repeat(len(seeds)),
                         None if values is None else values.repeat_interleave(cat, 0))
    grid = torch.linspace(-span, span, steps)
    for i in range(cont):
        v = values.repeat_interleave(steps, 0).clone()
        v[:, i] = grid.repeat(len(seeds))
        out[f"cont{i}"] = run(steps, None if category is None else category.repeat_interleave(steps, 0), v)
    return out


def atomic_write(path: Path, write) -> None:
    """Write through `write(tmp_path)` to a temporary name beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    atomic_write(Path(path), lambda tmp: img.save(tmp, format="PNG"))


def write_samples(out_dir, seeds, images: np.ndarray, cols: int | None = None, grid: np.ndarray | None = None) -> None:
    """One PNG per seed, grid.png (of `grid`, default the images in order) and samples.npz (key `images`,
    uint8 [N, H, W, C]), each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for s, img in zip(seeds, images):
        save_png(out / f"seed{s:04d}.png", img)
    save_png(out / "grid.png", make_grid(images if grid is None else grid, cols))

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, images=images, seeds=np.asarray(seeds, dtype=np.int64))
    atomic_write(out / "samples.npz", write_npz)


def load_generator(path, device: str | None = None) -> nn.Module:
    """The generator of a checkpoint (G_ema if present, else G), in eval mode without gradients."""
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
    return G.to(device or ("cuda" if torch.cuda.is_available() else "cpu")).eval().requires_grad_(False)


def generate_from_checkpoint(path, seeds: str, out_dir, cls: int | None = None, batch_size: int = 64,
                             device: str | None = None, *, psi: float = 1.0, cutoff: int | None = None,
                             noise_mode: str = "const", mix_rows: str | None = None, mix_cols: str | None = None,
                             mix_styles: str | None = None, interp: str | None = None, space: str = "z",
                             frames_per_seed: int = 30, video=None, fps: float = 30.0,
                             loop: bool = False, codes: bool = False, code_rows: int = 10, code_span: float = 2.0,
                             code_steps: int = 9) -> np.ndarray:
    """launch/generate.py: needs nothing but the checkpoint (G_ema if present, else G).

    Always writes the per-seed samples (see `write_samples`; a conditional model's grid.png has one row
    per class); with mix_rows/mix_cols also mix_grid.png and mix.npz; with interp also a video (default
    OUT_DIR/interp.gif); with codes (InfoGAN) codes_cat.png and codes_cont<i>.png, the latent traversals
    of the first code_rows seeds (see `code_traversals`). Every option is checked before anything is
    generated or written.
    """
    from hifigan import sample_style as style
    G = load_generator(path, device)
    check_style_options(G, psi, cutoff, noise_mode)
    seed_list = parse_seeds(seeds)
    mix = style.MixPlan.parse(G, mix_rows, mix_cols, mix_styles)
    walk = style.InterpPlan.parse(G, interp, space, frames_per_seed, video, fps, loop, out_dir)
    if codes:
        check_code_options(G, code_span, code_steps)
    opts = dict(cls=cls, batch_size=batch_size, psi=psi, cutoff=cutoff, noise_mode=noise_mode)
    images = generate(G, seed_list, **opts)
    if G.num_classes and cls is None:  # grid.png: row = class
        grid, cols = class_rows(images, seed_labels(seed_list, G.num_classes).numpy(), G.num_classes)
    else:
        grid, cols = images, G.num_classes or None
    write_samples(out_dir, seed_list, images, cols, grid=grid)
    if codes:
        for name, tiles in code_traversals(G, seed_list[:code_rows], code_span, code_steps, cls, batch_size).items():
            save_png(Path(out_dir) / f"codes_{name}.png", make_grid(tiles.reshape(-1, *tiles.shape[2:]), tiles.shape[1]))
    if mix is not None:
        style.write_mix(out_dir, mix, *style.style_mix(G, mix.rows, mix.cols, mix.styles, **opts))
    if walk is not None:
        frames = style.interpolate(G, walk.seeds, walk.space, walk.frames_per_seed, walk.loop, **opts)
        style.write_video(walk.video, frames, walk.fps)
    return images
