"""InfoGAN latent traversals (Chen et al. 2016, "InfoGAN: Interpretable Representation Learning by
Information Maximizing Generative Adversarial Nets", arXiv:1606.03657, figure 2): one seed per row,
one code varied along the row, everything else of the seed kept."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hifigan.errors import UserError
from hifigan.nn.codes import codes_from_normal
from hifigan.sampling.generate import run_batched
from hifigan.sampling.hooks import SamplingHooks, hooks_for
from hifigan.sampling.seeds import seed_labels, seed_latents


def check_code_options(G: nn.Module, span: float, steps: int) -> SamplingHooks:
    """G's hooks if it has latent codes and the traversal is well formed, else a UserError."""
    hooks = hooks_for(G)
    if hooks.codes is None or not any(hooks.codes(G)):
        raise UserError("--codes: this generator has no latent codes (G.code_cat and G.code_cont are 0); "
                        "only InfoGAN generators have them")
    if steps < 2 or not span > 0:
        raise UserError(f"--code-steps {steps} / --code-span {span}: need at least 2 steps and a positive span")
    return hooks


def code_traversals(G: nn.Module, seeds, span: float = 2.0, steps: int = 9, cls: int | None = None,
                    batch_size: int = 64, seed_rng: str = "torch") -> dict[str, np.ndarray]:
    """InfoGAN latent traversals: {name: uint8 [rows, cols, H, W, C]}.

    "cat": row = seed (its noise and continuous codes), column = category 0..code_cat-1.
    "cont<i>": row = seed (its noise, category and other codes), column = code i at `steps` values
    evenly from -span to span (the prior is [-1, 1]; the paper's figure 2 goes to 2).
    """
    hooks = check_code_options(G, span, steps)
    cat, cont = hooks.codes(G)
    z = seed_latents(seeds, G.z_dim, seed_rng)  # [S, z_dim]
    c = seed_labels(seeds, G.num_classes, cls)
    category, values = codes_from_normal(z, cat, cont)
    out = {}

    def run(reps: int, category_, values_):
        zz = z.repeat_interleave(reps, 0)
        cc = None if c is None else c.repeat_interleave(reps, 0)
        imgs = run_batched(G, lambda z_, c_, k_, v_: hooks.with_codes(G, z_, c_, k_, v_), [zz, cc, category_, values_],
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
