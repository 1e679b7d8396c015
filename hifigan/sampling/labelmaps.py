"""Label-map synthesis (SPADE: Park et al. 2019, arXiv:1903.07291): a semantic map in, an image out.

A label map is a PNG of label ids (8-bit gray or palette; 16-bit for instance maps), read as is and
resized with nearest-neighbour to the generator's size. With the image encoder (a SPADE G trained
with use_vae), seeds draw z ~ N(0, I) for multimodal outputs, and a style image sets z to its
posterior sample mu + sigma * eps (eps from the seed), the paper's style-guided synthesis.
Without the encoder G is a function of the map alone: every seed gives the same image.

    python launch/generate.py runs/mnist_spade --labelmap map.png --out s [--style photo.png] [--seeds 0-7]

writes OUT/labelmap.png (the map in colour), OUT/seed<NNNN>.png per seed, OUT/panel.png (map, style
image if any, then the outputs side by side) and OUT/samples.npz (key `images`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hifigan.errors import UserError


def palette(n: int) -> np.ndarray:
    """uint8 [n, 3]: the PASCAL VOC colour map (label id bits spread over R, G, B); label 0 is black."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out


def colorize(c: torch.Tensor, label_nc: int) -> np.ndarray:
    """Label maps int64 [N, 1 or 2, H, W] -> uint8 [N, H, W, 3] colour images (channel 0, the labels)."""
    ids = c[:, 0].clamp(0, max(label_nc - 1, 0)).cpu().numpy()
    return palette(max(label_nc, 1))[ids]


def side_by_side(*columns: np.ndarray) -> np.ndarray:
    """Equal-length uint8 [N, H, W, C] stacks (C 1 or 3) -> [N * k, H, W, 3], interleaved per sample:
    a grid with k columns shows each sample's row (map, real, synthesized)."""
    cols = [np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x for x in columns]
    return np.stack(cols, axis=1).reshape(-1, *cols[0].shape[1:])


def _read_ids(path: Path, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    if not path.is_file():
        raise UserError(f"{path}: no such {what}; give a PNG of label ids")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                ids = np.asarray(im).astype(np.int64)
            elif im.mode in ("RGB", "RGBA", "LA"):
                a = np.asarray(im.convert("RGB")).astype(np.int64)
                if not ((a[..., 0] == a[..., 1]) & (a[..., 1] == a[..., 2])).all():
                    raise UserError(f"{path}: a colour image, not a {what} (label ids in one channel: 8-bit gray, "
                                    f"palette or 16-bit)")
                ids = a[..., 0]
            else:
                raise UserError(f"{path}: image mode {im.mode} is not a {what} (8-bit gray, palette or 16-bit)")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: not a readable PNG {what} ({type(e).__name__}); give a PNG of label ids") from None
    return ids


def _resize_ids(ids: np.ndarray, h: int, w: int) -> torch.Tensor:
    t = torch.from_numpy(ids)[None, None].float()
    return F.interpolate(t, size=(h, w), mode="nearest").long()[0, 0]


def load_labelmap(path, G, instance=None) -> torch.Tensor:
    """The label map G takes, int64 [1, 1 or 2, H, W], from PNG files: labels at `path`, and for a G with
    instance edges the instance ids at `instance` (default: the label map, i.e. edges between labels)."""
    label_nc, (h, w) = G.label_nc, G.img_shape[1:]
    ids = _read_ids(Path(path).expanduser(), "label map")
    if ids.max() >= label_nc or ids.min() < 0:
        raise UserError(f"{path}: label id {int(ids.max())} but this generator knows {label_nc} labels (0.."
                        f"{label_nc - 1}); give a map of the labels it was trained on")
    maps = [_resize_ids(ids, h, w)]
    if getattr(G, "instance", False):
        inst = ids if instance is None else _read_ids(Path(instance).expanduser(), "instance map")
        if inst.shape != ids.shape:
            raise UserError(f"{instance}: instance map is {inst.shape[1]}x{inst.shape[0]} but the label map is "
                            f"{ids.shape[1]}x{ids.shape[0]}; give the pair of one image")
        maps.append(_resize_ids(inst, h, w))
    elif instance is not None:
        raise UserError("--instance: this generator takes no instance maps (trained without G.instance); drop it")
    return torch.stack(maps)[None]


def load_style(path, G) -> torch.Tensor:
    """A style image as [1, C, H, W] in [-1, 1] at G's size and channels."""
    from PIL import Image, UnidentifiedImageError
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such style image")
    c, h, w = G.img_shape
    try:
        with Image.open(p) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.LANCZOS)
            a = np.asarray(im, dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{p}: not a readable image ({type(e).__name__})") from None
    x = torch.from_numpy(a.reshape(h, w, c)).permute(2, 0, 1)[None]
    return x / 127.5 - 1


@torch.no_grad()
def synthesize(G, c: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
    """G(z, c) for label maps c [N, k, H, W] (z [N, z_dim] or None), in eval mode; [N, C, H, W] in [-1, 1]."""
    device = next(G.parameters()).device
    return G(None if z is None else z.to(device), c.to(device))


def style_latents(E, style: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps of the encoder's posterior for one style image, one row per eps [N, z_dim]."""
    device = next(E.parameters()).device
    with torch.no_grad():
        mu, logvar = E(style.to(device))
    return mu.cpu() + (0.5 * logvar.cpu()).exp() * eps


def load_encoder(path):
    """The image encoder E saved beside the generator in the same checkpoint (E.safetensors)."""
    from hifigan.checkpoint import build_net, resolve
    ckpt = resolve(path)
    file = (ckpt if ckpt.is_dir() else ckpt.parent) / "E.safetensors"
    if not file.is_file():
        raise UserError(f"{file}: missing; --style needs the image encoder, saved by runs with G.use_vae=true")
    E, md = build_net(file)
    if md.get("kind") != "encoder":
        raise UserError(f"{file}: holds a {md.get('kind')}, not an image encoder")
    return E.eval().requires_grad_(False)


def write_labelmap_outputs(out_dir, seeds, c, images: np.ndarray, label_nc: int, style=None) -> None:
    """labelmap.png, seed<NNNN>.png per seed, panel.png and samples.npz (see the module)."""
    from hifigan.sampling.grid import make_grid, save_png, to_uint8, write_samples
    out = Path(out_dir)
    colour = colorize(c, label_nc)
    write_samples(out, seeds, images, grid=images)
    save_png(out / "labelmap.png", colour[0])
    tiles = [colour[:1]] + ([to_uint8(style).numpy()] if style is not None else []) + [images]
    tiles = [np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x for x in tiles]
    save_png(out / "panel.png", make_grid(np.concatenate(tiles), sum(len(t) for t in tiles)))


def generate_labelmap(G, path, out_dir, opts) -> np.ndarray:
    """launch/generate.py for a label-map generator: `opts` (GenerateOptions) with labelmap set; see the module.
    Returns the per-seed images, uint8 [N, H, W, C]."""
    from hifigan.sampling.grid import to_uint8
    from hifigan.sampling.hooks import arch_name, hooks_for
    from hifigan.sampling.seeds import parse_seeds, seed_latents
    if not hooks_for(G).labelmap:
        raise UserError(f"--labelmap: this generator ({arch_name(G)!r}) does not synthesize from label maps "
                        f"(SPADE does); drop the option")
    if opts.labelmap is None:
        raise UserError(f"{arch_name(G)!r} synthesizes images from label maps: pass --labelmap MAP.png "
                        f"(a PNG of label ids 0..{G.label_nc - 1})")
    given = [f for f, on in [("--trunc", opts.psi != 1), ("--mix-rows/--mix-cols", opts.mix_rows or opts.mix_cols),
                             ("--interp", opts.interp), ("--codes", opts.codes), ("--class", opts.cls is not None)] if on]
    if given:
        raise UserError(f"{given[0]}: not for a label-map generator; give --labelmap [--style IMAGE] [--seeds]")
    if opts.batch_size < 1:
        raise UserError(f"--batch {opts.batch_size}: give a positive number of images per forward pass")
    seeds = parse_seeds(opts.seeds)
    c = load_labelmap(opts.labelmap, G, opts.instance)
    style = None
    if opts.style is not None:
        if not G.use_vae:
            raise UserError("--style: this generator was trained without the image encoder (G.use_vae=false), so "
                            "no style can be encoded; drop --style")
        style = load_style(opts.style, G)
        z = style_latents(load_encoder(path), style, seed_latents(seeds, G.z_dim))
    else:
        z = seed_latents(seeds, G.z_dim) if G.use_vae else None
    parts = []
    for i in range(0, len(seeds), opts.batch_size):
        n = len(seeds[i:i + opts.batch_size])
        zi = None if z is None else z[i:i + n]
        parts.append(to_uint8(synthesize(G, c.expand(n, -1, -1, -1), zi)).numpy())
    images = np.concatenate(parts)
    write_labelmap_outputs(out_dir, seeds, c, images, G.label_nc, style)
    return images
