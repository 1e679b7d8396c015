"""The variational autoencoder (Kingma and Welling 2014, "Auto-Encoding Variational Bayes",
arXiv:1312.6114), trained in the GAN trainer for comparison: the encoder q(z|x) is network E
(models/vae.py, returns mu and logvar), the decoder is the generator G, both stepped by one phase
VAEmain (nets [G, E]) that draws the reals. A VAE recipe has no D.

Loss = the negative ELBO per sample, averaged over the batch:
    -log p(x | z) + beta * KL(q(z | x) || N(0, I)),   z = mu + exp(logvar / 2) * eps, eps ~ N(0, I)
with the closed-form KL = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j) and one sample of z
(the reparameterization trick, so the gradient reaches the encoder).

The likelihood is Bernoulli by default: Kingma and Welling's choice for MNIST, whose pixels are
nearly binary; pixel intensities (x + 1) / 2 in [0, 1] are the targets and G's tanh output maps to
the probabilities p = (G(z) + 1) / 2 (clamped off 0 and 1: tanh saturates in float). It needs no
noise scale, and it keeps the reconstruction and KL terms on their natural relative scale, which a
fixed-sigma Gaussian only does for a well-chosen sigma. `likelihood: gaussian` gives
-log N(x; G(z), sigma^2 I) on the [-1, 1] pixels instead (a scaled squared error plus a constant).
beta != 1 weights the KL (Higgins et al. 2017, beta-VAE); beta = 1 is the ELBO.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from hifigan.config import PhaseConfig
from hifigan.errors import UserError
from hifigan.objectives.base import Batch, Objective, PhaseSpec
from hifigan.schema import bounded
from hifigan.registry import OBJECTIVES

_P_EPS = 1e-6  # keeps log p and log(1 - p) finite where G's tanh saturates


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """[N]: KL(N(mu, diag exp(logvar)) || N(0, I)), summed over the latent dimensions."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = mu + sigma * eps: a sample of q(z|x) that is differentiable in mu and logvar."""
    return mu + (0.5 * logvar).exp() * eps


def bernoulli_nll(img: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """[N]: -log p(x | z) for targets (img + 1) / 2 and probabilities (out + 1) / 2, summed over pixels."""
    p = ((out.float() + 1) / 2).clamp(_P_EPS, 1 - _P_EPS)  # float32: autocast refuses F.binary_cross_entropy
    t = ((img.float() + 1) / 2).clamp(0, 1)
    return -(t * p.log() + (1 - t) * (1 - p).log()).flatten(1).sum(dim=1)


def gaussian_nll(img: torch.Tensor, out: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N]: -log N(img; out, sigma^2 I), summed over pixels."""
    sq = (img - out).square().flatten(1)
    return sq.sum(dim=1) / (2 * sigma ** 2) + sq.shape[1] * math.log(sigma * math.sqrt(2 * math.pi))


@OBJECTIVES.register("vae")
class VAEObjective(Objective):
    """VAEmain: negative ELBO of the batch's reals; G is the decoder, E the encoder."""

    @dataclass(kw_only=True)
    class Config:
        likelihood: str = field(default="bernoulli", metadata={"choices": ("bernoulli", "gaussian")})  # p(x|z): bernoulli on (x+1)/2 (MNIST) or gaussian on [-1, 1]
        sigma: float = bounded(0.1, gt=0)  # gaussian likelihood's pixel std on the [-1, 1] scale (unused for bernoulli)
        beta: float = bounded(1.0, ge=0)   # weight of the KL term (1 = the ELBO; beta-VAE otherwise)

        def __post_init__(self):
            if self.sigma <= 0 or self.beta < 0:
                raise ValueError(f"sigma must be > 0 and beta >= 0, got sigma={self.sigma}, beta={self.beta}")

    phases = {"VAEmain": PhaseSpec("vae_main", ("G", "E"), ("G", "E"), reals="draw")}
    default_phases = [PhaseConfig(name="VAEmain", nets=["G", "E"])]

    def check_nets(self, nets: dict) -> None:
        G, E = nets["G"], nets["E"]
        if E.z_dim != G.z_dim:
            raise UserError(f"objective 'vae': the encoder's E.z_dim ({E.z_dim}) must equal G.z_dim ({G.z_dim})")

    def vae_main(self, nets: dict, batch: Batch):
        G, E = nets["G"], nets["E"]
        eps = batch.rand.randn(G.z_dim)  # [n, z_dim]
        mu, logvar = E(batch.img)  # [n, z_dim] each
        out = G(reparameterize(mu, logvar, eps), batch.c if G.num_classes else None)  # [n, C, H, W]
        if self.cfg.likelihood == "bernoulli":
            nll = bernoulli_nll(batch.img, out)
        else:
            nll = gaussian_nll(batch.img, out, self.cfg.sigma)
        kl = kl_standard_normal(mu, logvar)
        stats = {"nll": nll.mean(), "kl": kl.mean(), "elbo": -(nll + kl).mean(),
                 "posterior_std": (0.5 * logvar).exp().mean()}
        return {"recon": nll.mean(), "kl": kl.mean() * self.cfg.beta}, stats
