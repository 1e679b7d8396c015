"""The encoder of a variational autoencoder (Kingma and Welling 2014, "Auto-Encoding Variational
Bayes", arXiv:1312.6114), for comparing a VAE with the GANs on the same decoder.

q(z | x) = N(mu(x), diag(exp(logvar(x)))): DCGAN's D trunk (Radford et al. 2016, arXiv:1511.06434;
stride-2 4x4 convolutions, LeakyReLU(0.2), batch norm but on the first layer) and two linear
heads. The decoder p(x | z) is the generator G itself (DCGAN's G), so a trained VAE samples through
the usual G(z ~ N(0, I)) path. It is network E (the ENCODERS registry), trained jointly with G in
one phase (objectives/vae.py); a VAE recipe has no D.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from hifigan.models.energy import NORMS, base_size, conv_encoder
from hifigan.nn.init import dcgan_init
from hifigan.schema import MAX_CHANNELS, MAX_WIDTH, bounded, resolution_field
from hifigan.registry import DISCRIMINATORS, ENCODERS


@ENCODERS.register("dcgan")
class VAEEncoder(nn.Module):
    """img [N, channels, res, res] -> (mu [N, z_dim], logvar [N, z_dim])."""

    @dataclass(kw_only=True)
    class Config:
        z_dim: int = bounded(20, ge=1, le=MAX_WIDTH)                     # latent size; must equal G.z_dim (G is the decoder)
        resolution: int = resolution_field(32, 8, pow2=False)            # input H = W: >= 8, halving down to at most 7 px (28, 32, 64, ...)
        channels: int = bounded(1, ge=1, le=MAX_CHANNELS)                # image channels
        width: int = bounded(64, ge=1, le=MAX_WIDTH)                     # channels of the first layer; doubled per level
        max_width: int = bounded(1024, ge=1, le=MAX_WIDTH)               # cap on any layer's channels
        norm: str = field(default="batch", metadata={"choices": NORMS})  # after every conv but the first: batch (DCGAN) or none
        init_std: float = bounded(0.02, gt=0)                            # N(0, std) weight init; small heads start q(z|x) near N(0, I)

        def __post_init__(self):
            base_size(self.resolution)
            if self.z_dim < 1:
                raise ValueError(f"z_dim must be >= 1, got {self.z_dim}")

    num_classes = 0  # q(z | x) looks at the image alone

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.trunk, flat = conv_encoder(cfg.resolution, cfg.channels, cfg.width, cfg.max_width, cfg.norm)
        self.mu = nn.Linear(flat, cfg.z_dim)
        self.logvar = nn.Linear(flat, cfg.z_dim)
        dcgan_init(self, cfg.init_std)

    def forward(self, img, c=None):
        h = self.trunk(img)  # [N, flat]
        return self.mu(h), self.logvar(h)  # [N, z_dim] each


DISCRIMINATORS.moved("vae_encoder", "the VAE encoder is network E now: replace the D section with "
                     "E: {arch: dcgan, z_dim: ..., resolution: ...}, optim.D with optim.E, and VAEmain's nets with [G, E]")
