#!/usr/bin/env python
"""Sample images from a checkpoint: one PNG per seed, grid.png and samples.npz (key `images`,
uint8 [N, H, W, C]); optionally a style-mixing grid and an interpolation video.

    python launch/generate.py runs/mnist_dcgan --seeds 0-63 --out samples [--class 3]
    python launch/generate.py runs/mnist_infogan --seeds 0-99 --out s --codes     # latent traversals
    python launch/generate.py runs/ffhq --seeds 0-15 --out s --trunc 0.7 --trunc-cutoff 8
    python launch/generate.py runs/ffhq --out s --mix-rows 0-4 --mix-cols 10-15 --mix-styles 0-3
    python launch/generate.py runs/ffhq --out s --interp 0,5,9 --space w --video s/walk.mp4 --loop
    python launch/generate.py runs/mnist_lapgan --seeds 0-9 --out s --levels          # every pyramid level
    python launch/generate.py runs/mnist_spade --labelmap map.png --out s [--style photo.png --seeds 0-7]

A conditional model's grid.png has one row per class (seed s gets class s % classes unless --class).
Style mixing writes OUT/mix_grid.png (column seeds on top, row seeds on the left; cell = the row
seed with the --mix-styles taken from the column seed) and OUT/mix.npz (key `images`, uint8
[rows, cols, H, W, C]). The video has frames-per-seed * (seeds - 1) + 1 frames, or
frames-per-seed * seeds with --loop; frame i * frames-per-seed is seed i's own image.
"""
import argparse
import sys

from hifigan.errors import run_main
from hifigan.sampling import NOISE_MODES, SEED_RNGS, GenerateOptions, generate_from_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="run dir, checkpoint folder or .safetensors file")
    p.add_argument("--seeds", default="0-63", help="seeds, e.g. 0-63 or 1,5,9-11 (one image each)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--class", dest="cls", type=int, default=None,
                   help="class label for conditional models (default: seed %% num_classes)")
    p.add_argument("--batch", type=int, default=64, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--seed-rng", choices=SEED_RNGS, default="torch",
                   help="how a seed becomes z: torch (hifigan's, the default) or numpy (NVIDIA generate.py's "
                        "np.random.RandomState(seed).randn(1, z_dim), for converted StyleGAN2 checkpoints)")
    g = p.add_argument_group("StyleGAN generators")
    g.add_argument("--trunc", type=float, default=1.0, metavar="PSI",
                   help="truncation: w = w_avg + PSI * (w - w_avg) for StyleGAN (0 = the average image); for BigGAN "
                        "and SAGAN the threshold t on |z|, entries beyond it redrawn; 1 = off (default 1)")
    g.add_argument("--trunc-cutoff", type=int, default=None, metavar="N",
                   help="truncate only styles 0..N-1 (default: all)")
    g.add_argument("--noise-mode", choices=NOISE_MODES, default="const",
                   help="per-layer noise: const (fixed; a seed fixes its image), random (changes with the "
                        "run and the batch), none (default const)")
    g.add_argument("--mix-rows", metavar="SEEDS", help="style mixing: seeds of the rows (source A)")
    g.add_argument("--mix-cols", metavar="SEEDS", help="style mixing: seeds of the columns (source B)")
    g.add_argument("--mix-styles", metavar="RANGE",
                   help="styles the columns provide, e.g. 0-3 (coarse, the default) or 8-13 (fine)")
    v = p.add_argument_group("interpolation video")
    v.add_argument("--interp", metavar="SEEDS", help="walk through these seeds, e.g. 0,5,9 (at least two)")
    v.add_argument("--space", choices=["z", "w", "class"], default="z",
                   help="z: spherical interpolation of z (any generator); w: linear in w (StyleGAN); class: "
                        "--interp lists class ids, walked in BigGAN's class embedding with the z of the first of --seeds")
    v.add_argument("--frames-per-seed", type=int, default=30, metavar="N", help="frames from one seed to the next")
    v.add_argument("--video", default=None, metavar="PATH", help=".gif or .mp4 (default OUT/interp.gif)")
    v.add_argument("--fps", type=float, default=30.0, help="frames per second (default 30)")
    v.add_argument("--loop", action="store_true", help="walk back to the first seed")
    c = p.add_argument_group("InfoGAN latent codes")
    c.add_argument("--codes", action="store_true",
                   help="also write OUT/codes_cat.png (row = seed, column = category) and OUT/codes_cont<i>.png "
                        "(row = seed, column = code i from -SPAN to SPAN)")
    c.add_argument("--code-rows", type=int, default=10, metavar="N", help="rows: the first N of --seeds (default 10)")
    c.add_argument("--code-span", type=float, default=2.0, metavar="SPAN",
                   help="continuous codes run from -SPAN to SPAN (the prior is [-1, 1]; default 2, as the paper)")
    c.add_argument("--code-steps", type=int, default=9, metavar="N", help="columns of a continuous traversal (default 9)")
    m = p.add_argument_group("label-map generators (SPADE)")
    m.add_argument("--labelmap", default=None, metavar="MAP.png",
                   help="synthesize from this PNG of label ids (8-bit gray or palette); writes OUT/labelmap.png, one "
                        "image per seed and OUT/panel.png")
    m.add_argument("--instance", default=None, metavar="MAP.png",
                   help="instance ids (16-bit allowed) for a G with instance edges (default: the label map)")
    m.add_argument("--style", default=None, metavar="IMAGE",
                   help="style-guided synthesis: z from the encoder's posterior for IMAGE (G trained with use_vae)")
    p.add_argument("--levels", action="store_true",
                   help="LAPGAN: also write every pyramid level of each seed, coarsest first, at the output size: "
                        "OUT/levels/seed<s>.png, OUT/levels.png (row = seed) and OUT/levels.npz")
    return p.parse_args(argv)


def options(a: argparse.Namespace) -> GenerateOptions:
    return GenerateOptions(seeds=a.seeds, cls=a.cls, batch_size=a.batch, device=a.device, psi=a.trunc,
                           cutoff=a.trunc_cutoff, noise_mode=a.noise_mode, seed_rng=a.seed_rng, mix_rows=a.mix_rows, mix_cols=a.mix_cols,
                           mix_styles=a.mix_styles, interp=a.interp, space=a.space,
                           frames_per_seed=a.frames_per_seed, video=a.video, fps=a.fps, loop=a.loop,
                           codes=a.codes, code_rows=a.code_rows, code_span=a.code_span, code_steps=a.code_steps,
                           labelmap=a.labelmap, instance=a.instance, style=a.style, levels=a.levels)


def main(argv=None) -> int:
    a = parse_args(argv)
    return run_main(generate_from_checkpoint, a.checkpoint, a.out, options(a))


if __name__ == "__main__":
    sys.exit(main())
