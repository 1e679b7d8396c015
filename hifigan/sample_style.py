"""Style mixing grids and interpolation videos (sampling helpers for StyleGAN-family generators).

Style mixing follows figure 3 of Karras et al. 2019, "A Style-Based Generator Architecture for
Generative Adversarial Networks" (arXiv:1812.04948): cell (r, k) takes the ws of row seed r (source A)
and replaces the styles listed in `styles` by those of column seed k (source B). Low indices are the
coarse styles (pose, shape), high ones the fine styles (colour, micro-structure). The default,
styles 0-3, is the coarse group: the 4x4 and 8x8 layers of a StyleGAN with two styles per
resolution. Truncation applies to each seed's ws before mixing.

Interpolation videos walk seed 0 -> seed 1 -> ... (-> back to seed 0 with `loop`):
- in z by spherical interpolation (slerp, Shoemake 1985, "Animating Rotation with Quaternion
  Curves"; for GAN latents, White 2016, "Sampling Generative Networks", arXiv:1609.04468): the
  direction moves along the great circle and the norm linearly, so a Gaussian z never passes
  through the low-norm middle that linear interpolation cuts through;
- in w linearly between the mapped (truncated) ws: the mapping network makes w space flat enough
  for straight lines (StyleGAN section 4, perceptual path length).
Frame count: frames_per_seed * (len(seeds) - 1) + 1 without loop (the last frame is the last seed);
frames_per_seed * len(seeds) with loop (the walk back stops one step short of seed 0, so the video
repeats seamlessly). Frame i * frames_per_seed is seed i's own image, exactly as `generate` makes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.sample import (arch_name, atomic_write, check_style_options, generate_z, is_style_based, make_grid,
                            parse_ranges, parse_seeds, run_batched, save_png, seed_labels, seed_latents)

DEFAULT_MIX_STYLES = 4  # styles 0..3 (capped at num_ws): the coarse styles
SPACES = ("z", "w")
VIDEO_FORMATS = (".gif", ".mp4")


def require_style(G: nn.Module, option: str) -> None:
    if not is_style_based(G):
        raise UserError(f"{option}: needs a style-based generator (StyleGAN), but this one is "
                        f"{arch_name(G)!r} (no mapping network); drop the option")


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
        require_style(G, "--mix-rows/--mix-cols")
        return cls(tuple(parse_seeds(rows, "--mix-rows")), tuple(parse_seeds(cols, "--mix-cols")),
                   tuple(parse_styles(styles, G.num_ws)))


@dataclass(frozen=True)
class InterpPlan:
    """A checked interpolation-video request."""
    seeds: tuple[int, ...]
    space: str                 # "z" (slerp between z) or "w" (lerp between mapped ws)
    frames_per_seed: int
    video: Path                # .gif or .mp4
    fps: float
    loop: bool                 # walk back to the first seed

    @classmethod
    def parse(cls, G: nn.Module, seeds: str | None, space: str = "z", frames_per_seed: int = 30, video=None,
              fps: float = 30.0, loop: bool = False, out_dir=".") -> InterpPlan | None:
        """The command-line values -> a plan (video defaults to OUT_DIR/interp.gif), or None without seeds."""
        if seeds is None:
            if video is not None:
                raise UserError(f"--video {video}: give --interp SEEDS too (the seeds to walk between)")
            return None
        seed_list = parse_seeds(seeds, "--interp")
        if len(seed_list) < 2:
            raise UserError(f"--interp {seeds!r}: give at least two seeds to walk between, e.g. 0,1")
        if space not in SPACES:
            raise UserError(f"--space {space!r}: use z or w")
        if space == "w":
            require_style(G, "--space w")
        if frames_per_seed < 1:
            raise UserError(f"--frames-per-seed {frames_per_seed}: give a positive number of frames")
        if not fps > 0:
            raise UserError(f"--fps {fps}: give a positive frame rate")
        path = Path(video) if video is not None else Path(out_dir) / "interp.gif"
        video_format(path)
        return cls(tuple(seed_list), space, int(frames_per_seed), path, float(fps), bool(loop))


def map_seeds(G: nn.Module, seeds, cls: int | None = None, batch_size: int = 64, psi: float = 1.0,
              cutoff: int | None = None) -> torch.Tensor:
    """ws [N, num_ws, w_dim] on the CPU for `seeds` (z and c exactly as `sample.generate` draws them), truncated."""
    require_style(G, "w space")
    check_style_options(G, psi, cutoff)
    z = seed_latents(seeds, G.z_dim)
    c = seed_labels(seeds, G.num_classes, cls)
    return run_batched(G, lambda z, c: G.mapping(z, c, psi=psi, cutoff=cutoff), [z, c], batch_size,
                       post=lambda ws: ws.cpu())


def synthesize(G: nn.Module, ws: torch.Tensor, batch_size: int = 64, noise_mode: str = "const") -> np.ndarray:
    """Images for ws [N, num_ws, w_dim] as uint8 [N, H, W, C] (H, W: whatever synthesis returns)."""
    require_style(G, "w space")
    check_style_options(G, noise_mode=noise_mode)
    return run_batched(G, lambda ws: G.synthesis(ws, noise_mode=noise_mode), [ws], batch_size).numpy()


def style_mix(G: nn.Module, rows, cols, styles=None, cls: int | None = None, batch_size: int = 64,
              psi: float = 1.0, cutoff: int | None = None, noise_mode: str = "const"):
    """Style mixing: (row_images [R, H, W, C], col_images [K, H, W, C], cells uint8 [R, K, H, W, C]).

    Cell (r, k) is row seed r's ws with the styles in `styles` taken from column seed k's ws.
    The row and column images are the seeds' own images (as `sample.generate` makes them).
    """
    require_style(G, "--mix-rows/--mix-cols")
    styles = parse_styles(styles, G.num_ws)
    ws_r = map_seeds(G, rows, cls, batch_size, psi, cutoff)  # [R, num_ws, w_dim]
    ws_c = map_seeds(G, cols, cls, batch_size, psi, cutoff)  # [K, num_ws, w_dim]
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

    def write_npz(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, images=cells, row_images=row_images, col_images=col_images,
                     row_seeds=np.asarray(plan.rows, dtype=np.int64), col_seeds=np.asarray(plan.cols, dtype=np.int64),
                     styles=np.asarray(plan.styles, dtype=np.int64))
    atomic_write(out / "mix.npz", write_npz)


def _fractions(t, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype).reshape(-1, *[1] * like.dim())  # [T, 1, ...]


def lerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Linear interpolation: a, b of one shape, fractions t [T] -> [T, *a.shape]; exact at t = 0 and 1."""
    t = _fractions(t, a)
    return (1 - t) * a + t * b


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation of vectors a, b [D] at fractions t [T] -> [T, D].

    The direction moves at constant speed along the great circle from a/|a| to b/|b|; the norm
    moves linearly from |a| to |b|. Exact at t = 0 and 1; (anti)parallel or zero vectors, where
    the great circle is not defined, fall back to linear interpolation.
    """
    tt = _fractions(t, a)  # [T, 1]
    ra, rb = a.norm(), b.norm()
    if ra == 0 or rb == 0:
        return lerp(a, b, t)
    omega = torch.arccos((a @ b / (ra * rb)).clamp(-1, 1))
    sin_omega = torch.sin(omega)
    if sin_omega < 1e-6:
        return lerp(a, b, t)
    r = (1 - tt) * ra + tt * rb  # [T, 1]
    out = (torch.sin((1 - tt) * omega) * (r / ra)) * a / sin_omega + (torch.sin(tt * omega) * (r / rb)) * b / sin_omega
    out[tt[:, 0] == 0] = a  # pin the ends: sin(omega) / sin(omega) may round off 1
    out[tt[:, 0] == 1] = b
    return out


def walk(keys: torch.Tensor, frames_per_seed: int, loop: bool = False, between=lerp) -> torch.Tensor:
    """Frames through keys [S, ...]: `between(a, b, t)` per consecutive pair (and last -> first with loop).

    -> [frames_per_seed * (S - 1) + 1, ...], or [frames_per_seed * S, ...] with loop; frame
    i * frames_per_seed is keys[i].
    """
    n = len(keys)
    pairs = [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if loop else [])
    t = torch.arange(frames_per_seed, dtype=torch.float64) / frames_per_seed
    frames = [between(keys[i], keys[j], t) for i, j in pairs]
    if not loop:
        frames.append(keys[-1:])
    return torch.cat(frames)


def interpolate(G: nn.Module, seeds, space: str = "z", frames_per_seed: int = 30, loop: bool = False,
                cls: int | None = None, batch_size: int = 64, psi: float = 1.0, cutoff: int | None = None,
                noise_mode: str = "const") -> np.ndarray:
    """Frames uint8 [T, H, W, C] of a walk through `seeds` (see the module docstring for T).

    z space works for any generator; a conditional one keeps one class for the whole walk
    (`cls`, else seeds[0] % num_classes). w space needs a style-based generator; each seed's w
    carries its own class there. Frames are batched like `generate`, so each one is independent
    of the batch size with noise_mode "const".
    """
    if space not in SPACES:
        raise UserError(f"--space {space!r}: use z or w")
    if space == "w":
        keys = map_seeds(G, seeds, cls, batch_size, psi, cutoff)  # [S, num_ws, w_dim]
        return synthesize(G, walk(keys, frames_per_seed, loop, lerp), batch_size, noise_mode)
    z = walk(seed_latents(seeds, G.z_dim), frames_per_seed, loop, slerp)  # [T, z_dim]
    c = seed_labels(seeds[:1], G.num_classes, cls)
    c = None if c is None else c.expand(len(z))
    return generate_z(G, z, c, batch_size, psi, cutoff, noise_mode)


def _ffmpeg(path):
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UserError(f"--video {path}: writing MP4 needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                        f"or give a .gif path") from None
    return imageio_ffmpeg


def video_format(path) -> str:
    """'.gif' or '.mp4' (checking that an MP4 can be written), else UserError."""
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_FORMATS:
        raise UserError(f"--video {path}: cannot write {ext or 'a file without an extension'}; "
                        f"give a .gif or .mp4 path")
    if ext == ".mp4":
        _ffmpeg(path)
    return ext


def _write_gif(tmp, frames: np.ndarray, fps: float) -> None:
    from PIL import Image
    imgs = [Image.fromarray(f[..., 0] if f.shape[-1] == 1 else f) for f in frames]
    # GIF delays count 1/100 s, so 30 fps plays at 33. PIL folds a frame identical to the one
    # before into it (adding its delay), so a still stretch keeps its time with fewer frames.
    imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=max(10, round(1000 / fps)),
                 loop=0)


def _write_mp4(tmp, frames: np.ndarray, fps: float, ffmpeg) -> None:
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    h, w = frames.shape[1:3]
    # The temporary name ends in .tmp, so the container is named explicitly; H.264 in yuv420p needs
    # even sides (macro_block_size=2 pads odd ones).
    writer = ffmpeg.write_frames(str(tmp), (w, h), fps=fps, codec="libx264", pix_fmt_in="rgb24",
                                 macro_block_size=2, output_params=["-f", "mp4"], ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def write_video(path, frames: np.ndarray, fps: float = 30.0) -> None:
    """uint8 frames [T, H, W, C] -> a looping GIF (PIL) or an H.264 MP4 (imageio-ffmpeg), written atomically."""
    path = Path(path)
    if video_format(path) == ".gif":
        atomic_write(path, lambda tmp: _write_gif(tmp, frames, fps))
    else:
        ffmpeg = _ffmpeg(path)
        atomic_write(path, lambda tmp: _write_mp4(tmp, frames, fps, ffmpeg))
