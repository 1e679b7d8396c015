"""The BigGAN / SAGAN objective: the hinge loss (Lim & Ye 2017, arXiv:1705.02894; Miyato et al.
2018; Zhang et al. 2019, "Self-Attention Generative Adversarial Networks", arXiv:1805.08318, eq. 4)
    D: E[max(0, 1 - D(x, y))] + E[max(0, 1 + D(G(z), y))],     G: -E[D(G(z), y)],
with the projection discriminator's class term inside D(x, y), and BigGAN's orthogonal
regularization of G (Brock et al. 2019, "Large Scale GAN Training for High Fidelity Natural Image
Synthesis", arXiv:1809.11096, section 3.1, the off-diagonal form)
    R_beta(W) = beta * || W W^T (.) (1 - I) ||_F^2,   W = a weight reshaped to [out, in * k * k],
over every G weight of two or more dimensions except the shared class embedding. The reference
implementation adds 2 beta (W W^T (.) (1 - I)) W to W's gradient after backward, which is the
gradient of beta / 2 * || ... ||_F^2: we add that half as a loss term of Gmain, so the updates are the
reference's. Off by default (ortho_reg 0), as in the released runs; 1e-4 is the paper's beta.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hifigan.objectives.base import Batch, d_labels, fakes
from hifigan.objectives.gan import GANObjective, d_logistic, g_nonsaturating
from hifigan.registry import OBJECTIVES
from hifigan.schema import bounded


def d_hinge(logits_real: torch.Tensor, logits_fake: torch.Tensor):
    return F.relu(1 - logits_real).mean(), F.relu(1 + logits_fake).mean()


def g_hinge(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def ortho_penalty(net: torch.nn.Module, skip: tuple = ("shared.",)) -> torch.Tensor:
    """sum over weights W (ndim >= 2, names not starting with `skip`) of ||W W^T (.) (1 - I)||_F^2."""
    total = None
    for name, p in net.named_parameters():
        if p.ndim < 2 or not p.requires_grad or name.startswith(skip):
            continue
        w = p.flatten(1)
        gram = w @ w.T
        off = gram - torch.diag_embed(torch.diagonal(gram))
        term = off.square().sum()
        total = term if total is None else total + term
    return total if total is not None else torch.zeros(())


@OBJECTIVES.register("biggan")
class BigGANObjective(GANObjective):
    """Dmain / Gmain with the hinge loss (or the logistic one), plus G's orthogonal regularization."""

    @dataclass(kw_only=True)
    class Config:
        loss: str = "hinge"                                  # "hinge" (BigGAN, SAGAN) or "nonsaturating" (logistic)
        ortho_reg: float = bounded(0.0, ge=0, le=1)          # beta of the off-diagonal orthogonal regularization of G (paper: 1e-4)

        def __post_init__(self):
            if self.loss not in ("hinge", "nonsaturating"):
                raise ValueError(f"loss: {self.loss!r} is not allowed (choose from hinge, nonsaturating)")

    def d_terms(self, logits_real: torch.Tensor, logits_fake: torch.Tensor):
        return d_hinge(logits_real, logits_fake) if self.cfg.loss == "hinge" else d_logistic(logits_real, logits_fake)

    def g_term(self, logits_fake: torch.Tensor) -> torch.Tensor:
        return g_hinge(logits_fake) if self.cfg.loss == "hinge" else g_nonsaturating(logits_fake)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.mean() if self.cfg.loss == "hinge" else torch.sigmoid(logits).mean()

    def g_main(self, nets: dict, batch: Batch):
        fake, c = fakes(nets["G"], batch)
        logits = nets["D"](fake, d_labels(nets["D"], c))
        losses = {"adv": self.g_term(logits)}
        if self.cfg.ortho_reg:
            G = getattr(nets["G"], "module", nets["G"])  # the bare network's parameter names
            losses["ortho"] = 0.5 * self.cfg.ortho_reg * ortho_penalty(G)
        return losses, {"D_fake_for_G": self.score(logits)}
