"""What launch/project.py runs: targets (image files, a folder of them, or G's own seeds) are projected
one at a time and each gets a folder of results; or two projections are combined by an edit.

    OUT/projection.npz   ws float32 [num_ws, w_dim], image uint8 [H, W, C], noise_* [h, w] when optimized
    OUT/reconstruction.png, OUT/target.png (the target as G sees it: G's channels and resolution)
    OUT/metrics.json     psnr (dB, uint8), ssim, lpips (with --lpips), psnr_known (with --mask),
                         seconds, steps, space, loss, preset, target
    OUT/progress.mp4     with --video: target | reconstruction every log_every steps
    OUT/tensorboard/     with --tensorboard: loss terms, PSNR and SSIM per logged step
A folder of targets, or several seeds, gets one such folder per image (OUT/<file stem>, OUT/seed0003).
Every file is written atomically (hifigan.io).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan.checkpoint import load_generator
from hifigan.errors import UserError
from hifigan.io import atomic_write
from hifigan.project.config import ProjectConfig
from hifigan.project.edits import crossover, local_edit, style_transfer
from hifigan.project.image2stylegan import Projection, noise_key, noise_modules, project, style_hooks
from hifigan.project.losses import load_lpips, load_vgg_loss, lpips_loss
from hifigan.project.quality import psnr, ssim
from hifigan.sampling.from_checkpoint import check_device
from hifigan.sampling.generate import generate
from hifigan.sampling.grid import save_npz, save_png, to_uint8
from hifigan.sampling.seeds import parse_seeds, seed_labels
from hifigan.sampling.video import video_format, write_video
from hifigan.schema import short

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
EDITS = ("crossover", "style_transfer", "local_edit")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """launch/project.py's options besides the optimization's own (ProjectConfig); see its --help."""
    target: str | None = None          # --target: an image file or a folder of them
    seeds: str | None = None           # --seed: project G's own image(s) for these seeds instead
    mask: str | None = None            # --mask: PNG, white = known pixels (the rest is left to G)
    cls: int | None = None             # --class: label of a conditional G
    vgg: str | None = None             # --vgg: local VGG-16 weights (perceptual loss)
    lpips: str | None = None           # --lpips: local LPIPS linear heads (with --vgg: the lpips figure)
    video: str | None = None           # --video: progress video path (relative: inside OUT), .mp4 or .gif
    fps: float = 20.0                  # --fps of the progress video
    tensorboard: bool = False          # --tensorboard: write OUT/tensorboard events
    device: str | None = None          # --device: cpu or cuda (default cuda if available)


# ----------------------------------------------------------------------------------------------
# inputs

def _open_image(path: Path, flag: str):
    from PIL import Image, UnidentifiedImageError
    if not path.is_file():
        raise UserError(f"{flag} {path}: no such file; give a PNG or JPG image")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise UserError(f"{flag} {path}: not an image PIL can read ({short(str(e), 80)}); give a PNG or JPG") from None
    return img


def load_target(path, G: nn.Module, say=print) -> np.ndarray:
    """An image file -> uint8 [H, W, C] in G's channels and resolution (centre-cropped to a square and
    resized with Lanczos when needed; the conversion is printed)."""
    from PIL import Image
    path = Path(path)
    img = _open_image(path, "--target")
    channels, res = G.img_shape[0], G.img_shape[-1]
    if channels not in (1, 3):
        raise UserError(f"this generator makes {channels}-channel images; only 1 (gray) or 3 (RGB) can be projected")
    mode = "L" if channels == 1 else "RGB"
    size0, mode0 = img.size, img.mode
    img = img.convert(mode)
    side, cropped = min(img.size), img.width != img.height
    if cropped:
        left, top = (img.width - side) // 2, (img.height - side) // 2
        img = img.crop((left, top, left + side, top + side))
    if side != res:
        img = img.resize((res, res), Image.LANCZOS)
    if size0 != (res, res) or mode0 != mode:
        say(f"target {path}: {size0[0]}x{size0[1]} {mode0} -> {res}x{res} {'grayscale' if mode == 'L' else 'RGB'} "
            f"(the generator's channels and resolution{'; centre-cropped to a square' if cropped else ''})")
    arr = np.asarray(img, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def load_mask(path, res: int, say=print) -> np.ndarray:
    """A mask image -> uint8 [res, res] in {0, 1} (white, > 127 = known), resized (nearest) to res."""
    from PIL import Image
    path = Path(path)
    img = _open_image(path, "--mask").convert("L")
    if img.size != (res, res):
        say(f"mask {path}: {img.width}x{img.height} -> {res}x{res} (the generator's resolution)")
        img = img.resize((res, res), Image.NEAREST)
    m = (np.asarray(img) > 127).astype(np.uint8)
    if not m.any():
        raise UserError(f"--mask {path}: no known (white) pixels; white marks the pixels to reconstruct")
    return m


def to_tensor(img: np.ndarray, device) -> torch.Tensor:
    """uint8 [H, W, C] -> [1, C, H, W] in [-1, 1]."""
    return (torch.from_numpy(np.array(img)).float().permute(2, 0, 1)[None] / 127.5 - 1).to(device)  # a copy: PIL arrays are read-only


def list_targets(opts: RunOptions, G: nn.Module, out: Path) -> list[tuple[str, np.ndarray, Path]]:
    """(description, uint8 target [H, W, C], output folder) for every image to project."""
    if (opts.target is None) == (opts.seeds is None):
        raise UserError("give exactly one of --target IMAGE_OR_FOLDER and --seed SEEDS")
    if opts.seeds is not None:
        seeds = parse_seeds(opts.seeds, "--seed")
        imgs = generate(G, seeds, opts.cls, noise_mode="const")
        if len(seeds) == 1:
            return [(f"seed {seeds[0]}", imgs[0], out)]
        return [(f"seed {s}", im, out / f"seed{s:04d}") for s, im in zip(seeds, imgs)]
    t = Path(opts.target).expanduser()
    if t.is_dir():
        files = sorted(p for p in t.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"--target {t}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [(str(p), load_target(p, G), out / p.stem) for p in files]
    if not t.exists():
        raise UserError(f"--target {t}: no such file or folder; give an image or a folder of images")
    return [(str(t), load_target(t, G), out)]


def _perceptual(cfg: ProjectConfig, opts: RunOptions, device):
    """(perceptual loss callable or None, LPIPS network or None for the lpips figure)."""
    lp = load_lpips(opts.lpips, opts.vgg, device) if opts.lpips is not None or cfg.perceptual_kind == "lpips" else None
    if cfg.perceptual_kind == "lpips":
        return lpips_loss(lp), lp
    if cfg.perceptual_kind == "vgg":
        return load_vgg_loss(opts.vgg, device), lp
    return None, lp


# ----------------------------------------------------------------------------------------------
# outputs

class _Progress:
    """Per logged step: TensorBoard scalars (with SSIM) and a target | reconstruction video frame."""

    def __init__(self, out: Path, target_u8: np.ndarray, tensorboard: bool, video: bool):
        self.target, self.frames, self.writer = target_u8, [] if video else None, None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(out / "tensorboard"))

    def __call__(self, step: int, stats: dict, img: torch.Tensor) -> None:
        rec = to_uint8(img)[0].numpy()
        if self.writer is not None:
            for k, v in stats.items():
                if k != "step":
                    self.writer.add_scalar(f"Quality/{k}" if k == "psnr" else f"Loss/{k}", v, step)
            self.writer.add_scalar("Quality/ssim", ssim(rec, self.target), step)
        if self.frames is not None:
            self.frames.append(np.concatenate([self.target, rec], axis=1))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def write_projection(out: Path, result: Projection, target_u8: np.ndarray, mask: np.ndarray | None,
                     extra: dict) -> dict:
    """projection.npz, reconstruction.png, target.png and metrics.json in `out`; returns the metrics."""
    arrays = {"ws": result.ws.numpy().astype(np.float32), "image": result.image}
    arrays.update({noise_key(n): v.numpy().astype(np.float32) for n, v in result.noise.items()})
    if result.z is not None:
        arrays["z"] = result.z.numpy().astype(np.float32)
    save_npz(out / "projection.npz", **arrays)
    save_png(out / "reconstruction.png", result.image)
    save_png(out / "target.png", target_u8)
    metrics = {"psnr": psnr(result.image, target_u8), "ssim": ssim(result.image, target_u8)}
    if mask is not None:
        metrics["psnr_known"] = psnr(result.image, target_u8, mask)
    metrics.update(seconds=result.seconds, steps=result.steps, **extra)
    text = json.dumps(metrics, indent=2) + "\n"
    atomic_write(out / "metrics.json", lambda tmp: Path(tmp).write_text(text))
    return metrics


def _lpips_value(lp, a: np.ndarray, b: np.ndarray, device) -> float:
    with torch.no_grad():
        return float(lpips_loss(lp)(to_tensor(a, device), to_tensor(b, device))[0])


def _video_path(opts: RunOptions, out: Path) -> Path | None:
    if opts.video is None:
        return None
    p = Path(opts.video)
    p = p if p.is_absolute() else out / p
    video_format(p)  # fails early (wrong suffix, no MP4 writer)
    return p


def run_projection(checkpoint, out_dir, cfg: ProjectConfig, opts: RunOptions, preset: str | None = None) -> list[dict]:
    """Project every target (see the module docstring); returns one metrics dict per target."""
    cfg.check()
    check_device(opts.device)
    G = load_generator(checkpoint, opts.device)
    style_hooks(G)
    if cfg.noise != "off" and not noise_modules(G):
        raise UserError("--noise: this generator has no noise inputs (use_noise: false); drop --noise")
    device = next(G.parameters()).device
    out = Path(out_dir)
    c = seed_labels([0], G.num_classes, opts.cls)
    if c is not None and opts.cls is None and opts.seeds is None:
        raise UserError(f"this generator is conditional ({G.num_classes} classes): give --class K for the target")
    perceptual, lp = _perceptual(cfg, opts, device)
    targets = list_targets(opts, G, out)
    mask = load_mask(opts.mask, G.img_shape[-1]) if opts.mask is not None else None
    mask_t = None if mask is None else torch.from_numpy(mask).float()[None, None].to(device)
    results = []
    for what, target_u8, where in targets:
        video = _video_path(opts, where)
        where.mkdir(parents=True, exist_ok=True)
        progress = _Progress(where, target_u8, opts.tensorboard, video is not None)
        if opts.seeds is not None and G.num_classes:
            c = seed_labels([int(what.split()[-1])], G.num_classes, opts.cls)
        try:
            result = project(G, to_tensor(target_u8, device), cfg, mask_t, perceptual,
                             None if c is None else c.to(device), progress)
        finally:
            progress.close()
        extra = {"space": cfg.space, "loss": cfg.loss, "preset": preset, "target": what}
        if lp is not None:
            extra["lpips"] = _lpips_value(lp, result.image, target_u8, device)
        metrics = write_projection(where, result, target_u8, mask, extra)
        if video is not None and progress.frames:
            write_video(video, np.stack(progress.frames), opts.fps)
        print(f"{what}: psnr {metrics['psnr']:.2f} dB, ssim {metrics['ssim']:.4f}"
              + (f", psnr_known {metrics['psnr_known']:.2f} dB" if mask is not None else "")
              + f", {result.steps} steps in {result.seconds:.1f} s -> {where}", flush=True)
        results.append(metrics)
    return results


# ----------------------------------------------------------------------------------------------
# edits of two projections

def load_ws(path, G: nn.Module, flag: str) -> torch.Tensor:
    """ws [num_ws, w_dim] from a projection.npz (or a folder holding one), checked against G."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "projection.npz"
    if not p.is_file():
        raise UserError(f"{flag} {p}: no such file; give a projection.npz written by launch/project.py")
    try:
        with np.load(p, allow_pickle=False) as f:
            ws = np.asarray(f["ws"], dtype=np.float32)
    except (KeyError, ValueError, OSError) as e:
        raise UserError(f"{flag} {p}: not a projection.npz with a `ws` array ({short(str(e), 80)})") from None
    want = (style_hooks(G).num_ws(G), G.w_dim)
    if ws.ndim == 3 and ws.shape[0] == 1:
        ws = ws[0]
    if ws.shape != want:
        raise UserError(f"{flag} {p}: ws is {list(ws.shape)} but this generator needs {list(want)}; "
                        f"give a projection made with the same generator")
    return torch.from_numpy(ws)


def run_edit(checkpoint, out_dir, kind: str, a, b, layer: int | None, cfg: ProjectConfig, opts: RunOptions) -> dict:
    """crossover / style_transfer (ws rows < layer from A, the rest from B) or local_edit (B's image inside
    --mask, A's outside, by optimization): OUT/edit.npz (ws, image, ws_a, ws_b) and OUT/edit.png."""
    if kind not in EDITS:
        raise ValueError(f"unknown edit {kind!r}")
    check_device(opts.device)
    G = load_generator(checkpoint, opts.device)
    hooks = style_hooks(G)
    ws_a, ws_b = load_ws(a, G, f"--{kind.replace('_', '-')}"), load_ws(b, G, f"--{kind.replace('_', '-')}")
    out = Path(out_dir)
    if kind == "local_edit":
        if opts.mask is None:
            raise UserError("--local-edit needs --mask MASK.png (white = the region taken from B)")
        m = torch.from_numpy(load_mask(opts.mask, G.img_shape[-1])).float()[None, None]
        result = local_edit(G, ws_a, ws_b, m, cfg)
        ws, image = result.ws, result.image
    else:
        if layer is None:
            raise UserError(f"--{kind.replace('_', '-')} needs --layer K (rows < K from A, the rest from B)")
        ws = (crossover if kind == "crossover" else style_transfer)(ws_a, ws_b, layer)
        device = next(G.parameters()).device
        with torch.no_grad():
            image = to_uint8(hooks.synthesis(G, ws[None].to(device), "const"))[0].numpy()
    save_npz(out / "edit.npz", ws=ws.numpy().astype(np.float32), image=image, ws_a=ws_a.numpy(), ws_b=ws_b.numpy())
    save_png(out / "edit.png", image)
    print(f"{kind}: {out / 'edit.png'}", flush=True)
    return {"ws": ws, "image": image}
