"""Sampling finds a generator's capabilities in the per-family hook table, by registry name."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hifigan import sampling
from hifigan.errors import UserError
from hifigan.registry import GENERATORS
from hifigan.sampling.hooks import LAPGAN

TINY = {
    "stylegan1": {"z_dim": 8, "w_dim": 8, "resolution": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 2},
    "stylegan2": {"z_dim": 8, "w_dim": 8, "resolution": 8, "channel_base": 64, "channel_max": 8, "mapping_layers": 2},
    "dcgan": {"z_dim": 8, "resolution": 8, "width": 4, "code_cat": 3},
    "progan": {"z_dim": 8, "resolution": 8, "channel_base": 64, "channel_max": 8},
}


def build(arch):
    torch.manual_seed(0)
    return GENERATORS.build(arch, TINY[arch]).eval().requires_grad_(False)


def test_each_registered_generator_family_has_its_hooks():
    expected = {"stylegan1": sampling.STYLE_BASED, "stylegan2": sampling.STYLE_BASED,
                "dcgan": sampling.INFOGAN_CODES, "mlp": sampling.INFOGAN_CODES,
                "biggan": sampling.BIGGAN, "biggan_deep": sampling.BIGGAN, "sagan": sampling.Z_TRUNCATION,
                "lapgan": LAPGAN, "spade": sampling.hooks.LABELMAP}  # others: plain
    for arch in GENERATORS.names():
        assert sampling.HOOKS.get(arch, sampling.PLAIN) is expected.get(arch, sampling.PLAIN), arch


@pytest.mark.parametrize("arch", ["stylegan1", "stylegan2"])
def test_style_hooks_sample_what_the_generator_forward_makes(arch):
    G = build(arch)
    assert sampling.hooks_for(G) is sampling.STYLE_BASED
    z = sampling.seed_latents([3, 4], G.z_dim)
    with torch.no_grad():
        direct = sampling.to_uint8(G(z, psi=0.5, cutoff=2, noise_mode="const")).numpy()
    assert np.array_equal(sampling.generate(G, [3, 4], psi=0.5, cutoff=2), direct)
    assert sampling.style_mix(G, [0], [1, 2])[2].shape == (1, 2, 8, 8, 3)


@pytest.mark.parametrize("arch", ["dcgan", "progan"])
def test_families_without_style_hooks_refuse_truncation(arch):
    G = build(arch)
    assert not sampling.hooks_for(G).style_based
    assert sampling.generate(G, [0, 1]).shape[0] == 2
    with pytest.raises(UserError, match=f"needs a style-based generator .* {arch!r}"):
        sampling.generate(G, [0], psi=0.7)


def test_code_traversals_need_code_hooks_and_codes():
    assert sorted(sampling.code_traversals(build("dcgan"), [0], steps=2)) == ["cat"]
    for G in (build("progan"), GENERATORS.build("dcgan", {"z_dim": 8, "resolution": 8, "width": 4})):
        with pytest.raises(UserError, match="no latent codes"):
            sampling.code_traversals(G, [0])


def test_hooks_are_registered_once_and_need_their_partners():
    with pytest.raises(ValueError, match="twice"):
        sampling.register_hooks("stylegan2", sampling.STYLE_BASED)
    with pytest.raises(TypeError):
        sampling.SamplingHooks(mapping=lambda G, z, c, psi, cutoff: z)
