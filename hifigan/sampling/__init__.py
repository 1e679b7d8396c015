"""Sampling from a generator: seeds -> images, grids, truncation, style mixing, InfoGAN traversals,
interpolation videos.

    from hifigan import checkpoint, sampling
    G = checkpoint.load_generator("runs/ffhq")
    images = sampling.generate(G, range(16), psi=0.7)          # uint8 [16, H, W, C]
    sampling.save_png("grid.png", sampling.make_grid(images))

One concept a module: seeds (seed -> z, c), generate (batched forward passes, standing statistics),
grid (uint8, grids, PNG/NPZ files), hooks (what each generator family supports beyond G(z, c)),
style (w space, style mixing), codes (InfoGAN traversals), interpolate and video (walks and their
files), from_checkpoint (launch/generate.py's options and outputs).
"""
from hifigan.sampling.codes import check_code_options, code_traversals
from hifigan.sampling.from_checkpoint import GenerateOptions, GeneratePlan, generate_from_checkpoint
from hifigan.sampling.generate import generate, generate_z, has_batch_norm, run_batched, standing_stats
from hifigan.sampling.grid import class_rows, make_grid, save_npz, save_png, to_uint8, write_samples
from hifigan.sampling.hooks import (BIGGAN, HOOKS, INFOGAN_CODES, NOISE_MODES, PLAIN, STYLE_BASED, Z_TRUNCATION,
                                    SamplingHooks, arch_name,
                                    check_style_options, hooks_for, register_hooks, require_style)
from hifigan.sampling.interpolate import SPACES, InterpPlan, interpolate, lerp, slerp, walk
from hifigan.sampling.seeds import SEED_RNGS, check_seed_rng, parse_ranges, parse_seeds, seed_labels, seed_latents
from hifigan.sampling.style import MixPlan, map_seeds, mix_grid, parse_styles, style_mix, synthesize, write_mix
from hifigan.sampling.video import VIDEO_FORMATS, video_format, write_video

__all__ = [
    "GenerateOptions", "GeneratePlan", "generate_from_checkpoint",
    "generate", "generate_z", "run_batched", "standing_stats", "has_batch_norm",
    "parse_ranges", "parse_seeds", "seed_latents", "seed_labels", "SEED_RNGS", "check_seed_rng",
    "to_uint8", "make_grid", "class_rows", "save_png", "save_npz", "write_samples",
    "SamplingHooks", "HOOKS", "PLAIN", "STYLE_BASED", "INFOGAN_CODES", "BIGGAN", "Z_TRUNCATION", "NOISE_MODES", "register_hooks", "hooks_for",
    "arch_name", "require_style", "check_style_options",
    "MixPlan", "parse_styles", "map_seeds", "synthesize", "style_mix", "mix_grid", "write_mix",
    "check_code_options", "code_traversals",
    "SPACES", "InterpPlan", "lerp", "slerp", "walk", "interpolate",
    "VIDEO_FORMATS", "video_format", "write_video",
]
