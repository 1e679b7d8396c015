"""Structured latent codes (InfoGAN, Chen et al. 2016, arXiv:1606.03657, section 5).

A generator with codes reads z [N, z_dim] as [noise, categorical code (cat entries), continuous codes
(cont entries)]. Its prior is noise ~ N(0, I), category ~ Uniform{0..cat-1} fed as a one-hot
vector, continuous codes ~ Uniform(-1, 1). Every sampler in the project draws z ~ N(0, I) per seed,
so the generator maps the code entries of a standard-normal z onto that prior itself:

    category = argmax of the cat entries        (uniform: the argmax of iid normals)
    code_i   = erf(z_i / sqrt(2)) = 2 Phi(z_i) - 1  (uniform in (-1, 1): the probability integral transform)

so a seed fixes noise and codes, and sampling, FD, grids and interpolation need nothing special.
Explicit codes (latent traversals, the objective's own draws) bypass the transform; a continuous code
may then leave [-1, 1] (the paper's figure 2 varies one from -2 to 2).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def check_codes(z_dim: int, cat: int, cont: int) -> None:
    if cat < 0 or cont < 0 or cat == 1:
        raise ValueError(f"code_cat={cat}, code_cont={cont}: need code_cat = 0 or >= 2 and code_cont >= 0")
    if cat + cont > z_dim:
        raise ValueError(f"z_dim ({z_dim}) must hold the codes (code_cat {cat} + code_cont {cont}); raise z_dim")


def codes_from_normal(z: torch.Tensor, cat: int, cont: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The (category [N] int64 or None, continuous codes [N, cont] or None) a standard-normal z encodes."""
    n = z.shape[1] - cat - cont
    category = z[:, n:n + cat].argmax(1) if cat else None
    values = torch.erf(z[:, n + cat:] / math.sqrt(2.0)) if cont else None
    return category, values


def apply_codes(z: torch.Tensor, cat: int, cont: int, category: torch.Tensor | None = None,
                values: torch.Tensor | None = None) -> torch.Tensor:
    """z [N, z_dim] with its code entries replaced by the generator's input: one-hot(category) and the
    continuous values. Codes not given are read from z (codes_from_normal)."""
    if not cat and not cont:
        return z
    derived_cat, derived_cont = codes_from_normal(z, cat, cont)
    category = derived_cat if category is None else category
    values = derived_cont if values is None else values
    parts = [z[:, :z.shape[1] - cat - cont]]
    if cat:
        parts.append(F.one_hot(category.long(), cat).to(z.dtype))
    if cont:
        parts.append(values.to(z.dtype))
    return torch.cat(parts, 1)
