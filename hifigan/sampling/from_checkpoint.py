"""What launch/generate.py runs: `GenerateOptions` (its command line as one value), checked once
against the checkpoint's generator, then every requested output written."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hifigan import budget
from hifigan.checkpoint import load_generator
from hifigan.errors import UserError
from hifigan.sampling.codes import check_code_options, code_traversals
from hifigan.sampling.generate import generate
from hifigan.sampling.grid import class_rows, make_grid, save_png, write_samples
from hifigan.sampling.hooks import check_style_options, hooks_for
from hifigan.sampling.labelmaps import generate_labelmap
from hifigan.sampling.levels import check_levels_option, pyramid_levels, write_levels
from hifigan.sampling.interpolate import InterpPlan, interpolate
from hifigan.sampling.seeds import check_seed_rng, parse_seeds, seed_labels
from hifigan.sampling.style import MixPlan, style_mix, write_mix
from hifigan.sampling.video import write_video
from hifigan.schema import short


def check_device(device: str | None) -> str | None:
    """--device as torch reads it, or a one-line error (unknown name, CUDA absent)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {short(device)}: not a device; give cpu or cuda (cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA GPU is available here; give --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s); give cuda:0 .. "
                        f"cuda:{torch.cuda.device_count() - 1}")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: give cpu or cuda (cuda:N)")
    return device


@dataclass(frozen=True, kw_only=True)
class GenerateOptions:
    """launch/generate.py's options, as given (see its --help); `check(G, out_dir)` validates them."""
    seeds: str = "0-63"                 # --seeds: one image per seed, e.g. 0-63 or 1,5,9-11
    cls: int | None = None              # --class: one label for every seed (default seed % num_classes)
    batch_size: int = 64                # --batch: images per forward pass
    device: str | None = None           # --device: cpu or cuda (default cuda if available)
    psi: float = 1.0                    # --trunc: truncation psi (style-based G) or |z| threshold (BigGAN, SAGAN); 1 = off
    cutoff: int | None = None           # --trunc-cutoff: truncate styles 0..cutoff-1 (default all)
    noise_mode: str = "const"           # --noise-mode: const, random or none (style-based G only)
    seed_rng: str = "torch"             # --seed-rng: torch (ours) or numpy (NVIDIA generate.py's z per seed)
    mix_rows: str | None = None         # --mix-rows: style-mixing row seeds (source A)
    mix_cols: str | None = None         # --mix-cols: style-mixing column seeds (source B)
    mix_styles: str | None = None       # --mix-styles: styles the columns provide (default 0-3)
    interp: str | None = None           # --interp: seeds an interpolation video walks through
    space: str = "z"                    # --space: z (slerp, any G) or w (lerp, style-based G)
    frames_per_seed: int = 30           # --frames-per-seed
    video: str | Path | None = None     # --video: .gif or .mp4 (default OUT/interp.gif)
    fps: float = 30.0                   # --fps
    loop: bool = False                  # --loop: walk back to the first seed
    codes: bool = False                 # --codes: InfoGAN latent traversals
    code_rows: int = 10                 # --code-rows: traversal rows, the first N seeds
    code_span: float = 2.0              # --code-span: continuous codes run from -span to span
    code_steps: int = 9                 # --code-steps: columns of a continuous traversal
    labelmap: str | Path | None = None  # --labelmap: PNG of label ids a label-map generator (SPADE) synthesizes from
    instance: str | Path | None = None  # --instance: PNG of instance ids (G with instance edges; default the label map)
    style: str | Path | None = None     # --style: image whose encoded style sets z (SPADE with its encoder)
    levels: bool = False                # --levels: every pyramid level of each seed, side by side (LAPGAN)

    def check(self, G: nn.Module, out_dir) -> GeneratePlan:
        """Every option against G, before anything is generated or written; UserError on the first bad one."""
        check_style_options(G, self.psi, self.cutoff, self.noise_mode)
        if self.batch_size < 1:
            raise UserError(f"--batch {self.batch_size}: give a positive number of images per forward pass")
        seeds = tuple(parse_seeds(self.seeds))
        check_seed_rng(seeds, self.seed_rng)
        seed_labels(seeds[:1], G.num_classes, self.cls)  # --class fits G
        mix = MixPlan.parse(G, self.mix_rows, self.mix_cols, self.mix_styles)
        walk = InterpPlan.parse(G, self.interp, self.space, self.frames_per_seed, self.video, self.fps, self.loop,
                                out_dir)
        for extra in (mix.rows + mix.cols if mix else ()), (walk.seeds if walk else ()):
            check_seed_rng(extra, self.seed_rng)
        if self.codes:
            check_code_options(G, self.code_span, self.code_steps)
        if self.levels:
            check_levels_option(G)
        plan = GeneratePlan(seeds, mix, walk)
        self._check_memory(G, plan)
        return plan

    def _check_memory(self, G: nn.Module, plan: GeneratePlan) -> None:
        """The images this command holds at once (uint8, plus a float batch) must fit in memory."""
        per_image = 1
        for d in G.img_shape:
            per_image *= int(d)
        held = len(plan.seeds)
        if plan.mix is not None:
            held = max(held, (len(plan.mix.rows) + 1) * (len(plan.mix.cols) + 1))
        if plan.walk is not None:
            w = plan.walk
            held = max(held, w.frames_per_seed * (len(w.seeds) if w.loop else len(w.seeds) - 1) + 1)
        if self.codes:
            held = max(held, min(self.code_rows, len(plan.seeds)) * max(self.code_steps, 1))
        if self.levels:
            held = max(held, len(plan.seeds) * G.num_levels)
        need = held * per_image + 4 * min(self.batch_size, held) * per_image
        budget.check(f"launch/generate.py ({held:,} images of {'x'.join(map(str, G.img_shape))})", need, "cpu",
                     "ask for fewer seeds, frames or a smaller --batch")

    def sampling_args(self) -> dict:
        """The keyword arguments every sampling function takes (generate, style_mix, interpolate)."""
        return dict(cls=self.cls, batch_size=self.batch_size, psi=self.psi, cutoff=self.cutoff,
                    noise_mode=self.noise_mode, seed_rng=self.seed_rng)


@dataclass(frozen=True)
class GeneratePlan:
    """GenerateOptions checked against one generator, with the seed lists parsed."""
    seeds: tuple[int, ...]
    mix: MixPlan | None
    walk: InterpPlan | None


def generate_from_checkpoint(path, out_dir, options: GenerateOptions | None = None) -> np.ndarray:
    """launch/generate.py: needs nothing but the checkpoint (G_ema if present, else G).

    Always writes the per-seed samples (see `write_samples`; a conditional model's grid.png has one row
    per class); with mix_rows/mix_cols also mix_grid.png and mix.npz; with interp also a video (default
    OUT_DIR/interp.gif); with codes (InfoGAN) codes_cat.png and codes_cont<i>.png, the latent traversals
    of the first code_rows seeds (see `code_traversals`); with levels (LAPGAN) levels.png, levels.npz and
    levels/seed<s>.png, every pyramid level (see `write_levels`). Every option is checked before anything is
    generated or written. Returns the per-seed images, uint8 [N, H, W, C].
    """
    opts = options or GenerateOptions()
    G = load_generator(path, check_device(opts.device))
    if opts.levels:  # before the label-map branch, which has no levels
        check_levels_option(G)
    if opts.labelmap is not None or hooks_for(G).labelmap:
        return generate_labelmap(G, path, out_dir, opts)
    plan = opts.check(G, out_dir)
    args = opts.sampling_args()
    seeds = list(plan.seeds)
    images = generate(G, seeds, **args)
    if G.num_classes and opts.cls is None:  # grid.png: row = class
        grid, cols = class_rows(images, seed_labels(seeds, G.num_classes).numpy(), G.num_classes)
    else:
        grid, cols = images, G.num_classes or None
    write_samples(out_dir, seeds, images, cols, grid=grid)
    if opts.codes:
        traversals = code_traversals(G, seeds[:opts.code_rows], opts.code_span, opts.code_steps, opts.cls,
                                     opts.batch_size, opts.seed_rng)
        for name, tiles in traversals.items():  # tiles [rows, cols, H, W, C]
            grid = make_grid(tiles.reshape(-1, *tiles.shape[2:]), tiles.shape[1])
            save_png(Path(out_dir) / f"codes_{name}.png", grid)
    if opts.levels:
        write_levels(out_dir, seeds, pyramid_levels(G, seeds, opts.cls, opts.batch_size, opts.seed_rng))
    if plan.mix is not None:
        write_mix(out_dir, plan.mix, *style_mix(G, plan.mix.rows, plan.mix.cols, plan.mix.styles, **args))
    if plan.walk is not None:
        w = plan.walk
        write_video(w.video, interpolate(G, w.seeds, w.space, w.frames_per_seed, w.loop, z_seed=seeds[0], **args),
                    w.fps)
    return images
