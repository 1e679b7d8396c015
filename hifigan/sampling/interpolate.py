"""Interpolation walks: frames through a list of seeds (-> back to the first with `loop`).

- in z by spherical interpolation (slerp, Shoemake 1985, "Animating Rotation with Quaternion
  Curves"; for GAN latents, White 2016, "Sampling Generative Networks", arXiv:1609.04468): the
  direction moves along the great circle and the norm linearly, so a Gaussian z never passes
  through the low-norm middle that linear interpolation cuts through;
- in w linearly between the mapped (truncated) ws of a style-based generator: the mapping network
  makes w space flat enough for straight lines (StyleGAN, arXiv:1812.04948, section 4, perceptual
  path length);
- between classes, linearly in BigGAN's shared class embedding (Brock et al. 2019, figure 8), z held
  at seed `z_seed`'s (generate.py: the first of --seeds; truncated with --trunc): `--interp` then
  lists class ids.
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
from hifigan.sampling.generate import generate_z
from hifigan.sampling.hooks import arch_name, hooks_for, require_style
from hifigan.sampling.seeds import parse_seeds, seed_labels, seed_latents
from hifigan.sampling.style import map_seeds, synthesize
from hifigan.sampling.video import video_format

SPACES = ("z", "w", "class")


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
            raise UserError(f"--space {space!r}: use z, w or class")
        if space == "w":
            require_style(G, "--space w")
        if space == "class":
            class_walk_check(G, seed_list)
        if frames_per_seed < 1:
            raise UserError(f"--frames-per-seed {frames_per_seed}: give a positive number of frames")
        if not fps > 0:
            raise UserError(f"--fps {fps}: give a positive frame rate")
        path = Path(video) if video is not None else Path(out_dir) / "interp.gif"
        video_format(path)
        return cls(tuple(seed_list), space, int(frames_per_seed), path, float(fps), bool(loop))


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
                noise_mode: str = "const", seed_rng: str = "torch", z_seed: int = 0) -> np.ndarray:
    """Frames uint8 [T, H, W, C] of a walk through `seeds` (see the module docstring for T); with
    space "class", `seeds` are class ids and z is seed `z_seed`'s.

    z space works for any generator; a conditional one keeps one class for the whole walk
    (`cls`, else seeds[0] % num_classes). w space needs a style-based generator; each seed's w
    carries its own class there. Frames are batched like `generate`, so each one is independent
    of the batch size with noise_mode "const".
    """
    if space not in SPACES:
        raise UserError(f"--space {space!r}: use z, w or class")
    if space == "class":
        return class_walk(G, seeds, frames_per_seed, loop, z_seed, batch_size, psi, seed_rng)
    if space == "w":
        keys = map_seeds(G, seeds, cls, batch_size, psi, cutoff, seed_rng)  # [S, num_ws, w_dim]
        return synthesize(G, walk(keys, frames_per_seed, loop, lerp), batch_size, noise_mode)
    z = walk(seed_latents(seeds, G.z_dim, seed_rng), frames_per_seed, loop, slerp)  # [T, z_dim]
    c = seed_labels(seeds[:1], G.num_classes, cls)
    c = None if c is None else c.expand(len(z))
    return generate_z(G, z, c, batch_size, psi, cutoff, noise_mode)


def class_walk_check(G: nn.Module, classes) -> None:
    """--space class needs a shared class embedding and class ids the generator knows."""
    if hooks_for(G).class_embedding is None or getattr(G, "shared", None) is None:
        raise UserError(f"--space class: needs a generator with a shared class embedding (BigGAN, BigGAN-deep), "
                        f"but this one is {arch_name(G)!r}; use --space z")
    bad = [k for k in classes if not 0 <= k < G.num_classes]
    if bad:
        raise UserError(f"--interp {bad[0]}: with --space class the values are class ids 0..{G.num_classes - 1}")


@torch.no_grad()
def class_walk(G: nn.Module, classes, frames_per_seed: int, loop: bool, z_seed: int = 0, batch_size: int = 64,
               psi: float = 1.0, seed_rng: str = "torch") -> np.ndarray:
    """Frames uint8 [T, H, W, C]: one z (seed z_seed, truncated with psi != 1), the class embedding
    walked linearly through `classes`; frame i * frames_per_seed is class classes[i]."""
    from hifigan.sampling.generate import run_batched
    class_walk_check(G, classes)
    emb = hooks_for(G).class_embedding(G)
    device = emb.weight.device
    keys = emb(torch.as_tensor(list(classes), device=device)).detach().cpu()   # [S, shared_dim]
    e = walk(keys, frames_per_seed, loop, lerp).to(keys.dtype)                   # [T, shared_dim]
    z = seed_latents([z_seed], G.z_dim, seed_rng, threshold=psi if psi != 1 else None).expand(len(e), -1)
    return run_batched(G, lambda z, e: G(z, None, embed=e), [z, e], batch_size).numpy()
